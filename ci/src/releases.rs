//! `ci/releases.toml`: an ordered list of releases, each a set of
//! `leaklab-service` Cargo features (docs/interfaces.md).

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// One release: a name and the `leak-<id>` features it was built with.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Release {
    pub name: String,
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    pub notes: Option<String>,
}

#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    release: Vec<Release>,
}

/// Parses a releases file's text.
pub fn parse(text: &str) -> Result<Vec<Release>> {
    let file: File = toml::from_str(text)
        .context("not a releases file ([[release]] tables with name and features)")?;
    if file.release.is_empty() {
        bail!("the releases file lists no [[release]]");
    }
    for release in &file.release {
        if release.name.trim().is_empty() {
            bail!("a release has an empty name");
        }
        for feature in &release.features {
            if !feature.starts_with("leak-") {
                bail!(
                    "release {}: feature `{feature}` is not a leak-<id> feature of leaklab-service",
                    release.name
                );
            }
        }
    }
    let mut names: Vec<&str> = file.release.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        bail!("release name {} appears twice", w[0]);
    }
    Ok(file.release)
}

/// Reads and parses a releases file.
pub fn load(path: &Path) -> Result<Vec<Release>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("in {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_parse_in_order_and_bad_files_are_refused() {
        let releases = parse(
            r#"
            [[release]]
            name = "v1"
            features = []
            [[release]]
            name = "v2"
            features = ["leak-unbounded-cache"]
            notes = "cache without eviction"
        "#,
        )
        .unwrap();
        assert_eq!(releases.len(), 2);
        assert_eq!(releases[1].features, vec!["leak-unbounded-cache"]);
        assert!(parse("").is_err());
        assert!(parse("[[release]]\nname = \"a\"\nfeatures = [\"tokio\"]").is_err());
        assert!(parse("[[release]]\nname = \"a\"\n[[release]]\nname = \"a\"").is_err());
    }
}
