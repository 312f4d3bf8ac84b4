//! Judging one block's expectations against what its command did: each
//! expectation met or "expected ..., found ..." in the lesson's own terms.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::parse::{Expectation, Op, Stream};

/// What a command did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Its exit code; None when a signal ended it or it was killed.
    pub exit: Option<i32>,
    /// Set when it ran past its limit and was killed.
    pub timed_out: Option<Duration>,
    pub stdout: String,
    pub stderr: String,
}

/// Every expectation that was not met, in the order written, each as
/// "expected ..., found ...". Empty when the block passed. `root` is where
/// `file:` paths start.
pub fn failures(expectations: &[Expectation], outcome: &Outcome, root: &Path) -> Vec<String> {
    let mut failed = Vec::new();
    if let Some(limit) = outcome.timed_out {
        failed.push(format!(
            "expected the command to finish, found it still running after {} s (killed; --timeout)",
            limit.as_secs_f64()
        ));
    }
    let json = serde_json::from_str::<Value>(&outcome.stdout);
    if let Some(died) = unexpected_death(expectations, json.as_ref().ok()) {
        failed.push(died);
    }
    for e in expectations {
        let found = match e {
            Expectation::Exit(code) => exit(*code, outcome),
            Expectation::Json { pointer, op, value } => match &json {
                Ok(doc) => compare(doc.pointer(pointer), *op, value),
                Err(err) => Some(format!("stdout that is not JSON ({err})")),
            },
            Expectation::Contains { stream, text } => {
                let out = match stream {
                    Stream::Stdout => &outcome.stdout,
                    Stream::Stderr => &outcome.stderr,
                };
                (!out.contains(text.as_str())).then(|| match last_line(out) {
                    Some(last) => format!("no such text in {stream} (its last line: {last:?})"),
                    None => format!("{stream} empty"),
                })
            }
            Expectation::File { path, text } => file_contains(&root.join(path), text),
        };
        if let Some(found) = found {
            failed.push(format!("expected {}, found {found}", expected(e)));
        }
    }
    failed
}

/// A run whose target died is no evidence for what the lesson promises,
/// whatever its verdict: every block whose JSON has a `target_died` fails
/// on it unless the block itself says what `/target_died` should be.
fn unexpected_death(expectations: &[Expectation], doc: Option<&Value>) -> Option<String> {
    let asked = expectations.iter().any(
        |e| matches!(e, Expectation::Json { pointer, .. } if pointer.starts_with("/target_died")),
    );
    let died = doc?.get("target_died").filter(|d| !d.is_null())?;
    (!asked)
        .then(|| format!("expected the target to live through the run, found target_died {died}"))
}

/// What an expectation asks for, in a sentence's words.
fn expected(e: &Expectation) -> String {
    match e {
        Expectation::Exit(code) => format!("exit {code}"),
        Expectation::Json { pointer, op, value } => format!("{pointer} {op} {value}"),
        Expectation::Contains { stream, text } => format!("{stream} to contain {text:?}"),
        Expectation::File { path, text } => format!("{path} to contain {text:?}"),
    }
}

fn exit(code: i32, outcome: &Outcome) -> Option<String> {
    match outcome.exit {
        Some(c) if c == code => None,
        Some(c) => Some(format!("exit {c}")),
        None if outcome.timed_out.is_some() => Some("no exit (killed past the limit)".into()),
        None => Some("no exit code (ended by a signal)".into()),
    }
}

/// None when `found OP want` holds, else how `found` reads.
fn compare(found: Option<&Value>, op: Op, want: &Value) -> Option<String> {
    let Some(found) = found else {
        return Some("nothing there (no such field)".into());
    };
    let holds = match (op, found.as_f64(), want.as_f64()) {
        (Op::Eq, Some(a), Some(b)) => a == b,
        (Op::Ne, Some(a), Some(b)) => a != b,
        (Op::Eq, _, _) => found == want,
        (Op::Ne, _, _) => found != want,
        (Op::Gt, Some(a), Some(b)) => a > b,
        (Op::Lt, Some(a), Some(b)) => a < b,
        (Op::Gt | Op::Lt, _, _) => false,
    };
    (!holds).then(|| found.to_string())
}

fn file_contains(path: &Path, text: &str) -> Option<String> {
    match std::fs::read(path) {
        Ok(bytes) if String::from_utf8_lossy(&bytes).contains(text) => None,
        Ok(bytes) => Some(format!("no such text in its {} bytes", bytes.len())),
        Err(err) => Some(format!("no file to read ({err})")),
    }
}

fn last_line(out: &str) -> Option<&str> {
    out.lines().rev().map(str::trim).find(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::lessons::parse::expectation;

    fn judge(line: &str, outcome: &Outcome) -> Vec<String> {
        let e = expectation(line).unwrap();
        failures(&[e], outcome, Path::new("/nonexistent-root"))
    }

    fn ran(exit: i32, stdout: &str, stderr: &str) -> Outcome {
        Outcome {
            exit: Some(exit),
            timed_out: None,
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn exit_passes_on_its_code_and_names_the_one_found() {
        assert!(judge("exit: 3", &ran(3, "", "")).is_empty());
        assert_eq!(
            judge("exit: 3", &ran(0, "", "")),
            ["expected exit 3, found exit 0"]
        );
        let killed = Outcome {
            exit: None,
            ..Outcome::default()
        };
        assert_eq!(
            judge("exit: 0", &killed),
            ["expected exit 0, found no exit code (ended by a signal)"]
        );
    }

    #[test]
    fn a_run_whose_target_died_fails_unless_the_block_expects_it() {
        let died = json!({"verdict": {"class": "retention"},
                          "target_died": {"at_s": 12.0, "reason": "connection refused"}})
        .to_string();
        let failed = judge("json: /verdict/class == \"retention\"", &ran(3, &died, ""));
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(failed[0]
            .starts_with("expected the target to live through the run, found target_died {"));
        assert!(judge("json: /target_died != null", &ran(3, &died, "")).is_empty());
        let lived = json!({"verdict": {"class": "retention"}, "target_died": null}).to_string();
        assert!(judge("json: /verdict/class == \"retention\"", &ran(3, &lived, "")).is_empty());
    }

    #[test]
    fn json_compares_strings_numbers_booleans_and_null() {
        let doc = json!({"verdict": {"class": "churn", "leak": false, "burn": null},
                         "ground_truth": {"error_pct": -7.5}, "n": 1,
                         "signals": {"components.churn_allocations": {"slope_per_s": 12.0}}})
        .to_string();
        let out = ran(0, &doc, "");
        for pass in [
            "json: /verdict/class == \"churn\"",
            "json: /verdict/class != \"retention\"",
            "json: /verdict/leak == false",
            "json: /verdict/burn == null",
            "json: /ground_truth/error_pct > -25",
            "json: /ground_truth/error_pct < 25",
            "json: /n == 1.0",
            "json: /signals/components.churn_allocations/slope_per_s > 0",
        ] {
            assert!(judge(pass, &out).is_empty(), "{pass}");
        }
        assert_eq!(
            judge("json: /verdict/class == \"retention\"", &out),
            ["expected /verdict/class == \"retention\", found \"churn\""]
        );
        assert_eq!(
            judge("json: /ground_truth/error_pct > 0", &out),
            ["expected /ground_truth/error_pct > 0, found -7.5"]
        );
        assert_eq!(
            judge("json: /verdict/class < 3", &out),
            ["expected /verdict/class < 3, found \"churn\""]
        );
        assert_eq!(
            judge("json: /verdict/burn != null", &out),
            ["expected /verdict/burn != null, found null"]
        );
        assert_eq!(
            judge("json: /verdict/missing == 1", &out),
            ["expected /verdict/missing == 1, found nothing there (no such field)"]
        );
        let not_json = judge("json: /a == 1", &ran(0, "summary: ok\n", ""));
        assert!(
            not_json[0].starts_with("expected /a == 1, found stdout that is not JSON"),
            "{not_json:?}"
        );
    }

    #[test]
    fn contains_reads_its_own_stream() {
        let out = ran(2, "usage: --mystery SEED\n", "error: too small\n");
        assert!(judge("stdout: contains --mystery", &out).is_empty());
        assert!(judge("stderr: contains too small", &out).is_empty());
        assert_eq!(
            judge("stderr: contains --mystery", &out),
            ["expected stderr to contain \"--mystery\", found no such text in stderr (its last line: \"error: too small\")"]
        );
        assert_eq!(
            judge("stdout: contains x", &ran(0, "", "")),
            ["expected stdout to contain \"x\", found stdout empty"]
        );
    }

    #[test]
    fn file_reads_from_the_root() {
        let root = std::env::temp_dir().join(format!("leaklab-ci-lessons-{}", std::process::id()));
        std::fs::create_dir_all(root.join("out")).unwrap();
        std::fs::write(root.join("out/canary.svg"), "<svg width=\"1\"/>").unwrap();
        let check = |line: &str| failures(&[expectation(line).unwrap()], &ran(0, "", ""), &root);
        assert!(check("file: out/canary.svg contains <svg").is_empty());
        assert_eq!(
            check("file: out/canary.svg contains <html"),
            ["expected out/canary.svg to contain \"<html\", found no such text in its 16 bytes"]
        );
        let missing = check("file: out/none.svg contains <svg");
        assert!(missing[0].contains("found no file to read"), "{missing:?}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_command_killed_past_its_limit_fails_whatever_else_held() {
        let out = Outcome {
            exit: None,
            timed_out: Some(Duration::from_secs(120)),
            ..Outcome::default()
        };
        let failed = judge("stdout: contains x", &out);
        assert_eq!(failed.len(), 2);
        assert!(
            failed[0].contains("still running after 120 s"),
            "{failed:?}"
        );
    }
}
