//! Reading another program's JSON into `leaklab-model`'s types.
//!
//! Every report `cargo ci` reads (loadgen's run summary, hunt, OOM and canary
//! reports, its own bisect report) is deserialised into the shared type, never
//! poked at through `serde_json::Value`: a field that is missing, renamed or of
//! the wrong type is an error naming the document and the field, e.g.
//! ``out/ci-hunt.json: at `after_fix`: missing field `leak` ...``, never a
//! default that quietly turns a leak into "no leak". Documents that carry a
//! `schema` string are checked against the one this build knows.

use std::path::Path;

use anyhow::{bail, Context, Result};
use leaklab_model::{canary, hunt, oom, run};
use serde::de::DeserializeOwned;

/// A report type that names its schema (`leaklab.run/v1`, ...).
pub trait Schema {
    /// The schema this build reads.
    const SCHEMA: &'static str;
}

macro_rules! schema {
    ($($ty:ty => $module:ident),+ $(,)?) => {$(
        impl Schema for $ty {
            const SCHEMA: &'static str = $module::SCHEMA;
        }
    )+};
}

schema! {
    run::RunSummary => run,
    hunt::HuntReport => hunt,
    oom::OomReport => oom,
    canary::CanaryReport => canary,
}

/// Deserialises `bytes` as a `T`; `source` names where they came from (a file,
/// or "loadgen run's stdout") in the error, with the path of the field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8], source: &str) -> Result<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let at = match err.path().to_string() {
            path if path == "." => "the top level".to_owned(),
            path => format!("`{path}`"),
        };
        anyhow::anyhow!("{source}: at {at}: {}", err.inner())
    })?;
    de.end()
        .map_err(|err| anyhow::anyhow!("{source}: after the document: {err}"))?;
    Ok(value)
}

/// [`parse`], after checking the `schema`: a document of another schema is
/// refused as such before its fields are read (a run summary given to the
/// hunt check says so, rather than "missing field").
pub fn parse_report<T: DeserializeOwned + Schema>(bytes: &[u8], source: &str) -> Result<T> {
    #[derive(serde::Deserialize)]
    struct Named {
        schema: String,
    }
    if let Ok(Named { schema }) = serde_json::from_slice::<Named>(bytes) {
        if schema != T::SCHEMA {
            bail!(
                "{source}: at `schema`: the document is `{schema}`, expected `{}`",
                T::SCHEMA
            );
        }
    }
    parse(bytes, source)
}

/// Reads the file at `path` as a `T`.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&bytes, &path.display().to_string())
}

/// Reads the file at `path` as a report with a schema.
pub fn read_report<T: DeserializeOwned + Schema>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_report(&bytes, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use leaklab_model::hunt::HuntReport;
    use leaklab_model::run::Verdict;

    use super::*;

    #[test]
    fn a_missing_field_is_an_error_naming_the_source_and_the_field() {
        let err = parse::<Verdict>(br#"{"class": "none", "findings": []}"#, "summary.json")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("summary.json: "), "{err}");
        assert!(err.contains("missing field `leak`"), "{err}");
    }

    #[test]
    fn a_mistyped_field_names_its_path() {
        let doc = br#"{"leak": "yes", "class": "none", "findings": [], "time_to_oom_s": null,
            "time_to_oom_interval_s": null, "limit_bytes": null, "reasons": []}"#;
        let err = parse::<Verdict>(doc, "out/x.json").unwrap_err().to_string();
        assert!(err.contains("at `leak`"), "{err}");
        assert!(err.contains("expected a boolean"), "{err}");
        let err = parse::<Verdict>(&doc[..20], "out/x.json").unwrap_err();
        assert!(err.to_string().starts_with("out/x.json: "), "{err}");
    }

    #[test]
    fn an_unknown_class_is_an_error_not_none() {
        let doc = br#"{"leak": true, "class": "leaky", "findings": [], "time_to_oom_s": null,
            "time_to_oom_interval_s": null, "limit_bytes": null, "reasons": []}"#;
        let err = parse::<Verdict>(doc, "s").unwrap_err().to_string();
        assert!(err.contains("at `class`") && err.contains("leaky"), "{err}");
    }

    #[test]
    fn another_schema_is_refused() {
        let doc = br#"{"schema": "leaklab.hunt/v2", "leaks": [], "findings": [],
            "after_fix": {"leak": false, "class": "none", "burn_rate_bytes_per_h": 0.0,
                          "alive_tasks_slope_per_s": 0.0},
            "report": "r.html", "markdown": "hunt.md", "elapsed_s": 1.0}"#;
        let err = parse_report::<HuntReport>(doc, "h.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("leaklab.hunt/v2") && err.contains("leaklab.hunt/v1"),
            "{err}"
        );
        let ok = String::from_utf8_lossy(doc).replace("v2", "v1");
        assert!(parse_report::<HuntReport>(ok.as_bytes(), "h.json").is_ok());
    }
}
