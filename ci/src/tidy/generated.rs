//! `cargo ci tidy --only generated`: no tracked file lives under generated
//! output, nor is one that `.gitignore` ignores.
//!
//! Generated output is a path component `out` (the tools' `--out`
//! directories) or `target` (cargo's build directory), anywhere in the tree,
//! except inside a crate's `src/`, where such a folder is a module
//! (`loadgen/src/target/` is the module for the service under test).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::Findings;

/// The generated-output component of `path`, if it has one.
pub fn generated_component(path: &str) -> Option<&str> {
    path.split('/')
        .take_while(|c| *c != "src")
        .find(|c| *c == "out" || *c == "target")
}

/// Tracked files that the ignore rules (`.gitignore`, `.git/info/exclude`) match.
fn tracked_but_ignored(root: &Path) -> Result<Vec<String>> {
    let output = Command::new("git")
        .arg("-C")
        .arg(root)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--ignored",
            "--exclude-standard",
        ])
        .output()
        .context("running git ls-files --ignored")?;
    if !output.status.success() {
        bail!(
            "git ls-files --ignored failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .split('\0')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect())
}

/// The problems among the tracked `files`, and those `ignored`.
pub fn problems(files: &[String], ignored: &[String]) -> Vec<String> {
    let mut problems: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let component = generated_component(file)?;
            Some(format!(
                "{file}: tracked, but `{component}/` is generated output: `git rm --cached {file}`"
            ))
        })
        .collect();
    problems.extend(
        ignored
            .iter()
            .filter(|file| generated_component(file).is_none())
            .map(|file| {
                format!("{file}: tracked, but .gitignore ignores it: `git rm --cached {file}`, or stop ignoring it")
            }),
    );
    problems
}

/// Runs the group over the tracked `files` of the repository at `root`.
pub fn check(root: &Path, files: &[String]) -> Result<Findings> {
    let ignored = tracked_but_ignored(root)?;
    Ok(Findings {
        checked: format!(
            "{} tracked files, none under out/ or target/ or ignored",
            files.len()
        ),
        problems: problems(files, &ignored),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_and_target_are_generated_as_whole_components_outside_src() {
        assert_eq!(generated_component("out/ci-hunt.json"), Some("out"));
        assert_eq!(
            generated_component("loadgen/target/debug/x"),
            Some("target")
        );
        assert_eq!(generated_component("ci/src/output.rs"), None);
        assert_eq!(generated_component("docs/targets.md"), None);
        assert_eq!(generated_component("loadgen/src/target/mod.rs"), None);
        assert_eq!(generated_component("loadgen/tests/out/x.json"), Some("out"));
    }

    #[test]
    fn a_tracked_output_or_ignored_file_is_a_problem_once() {
        let files = [
            "README.md".to_owned(),
            "service/out/x.json".to_owned(),
            "a.profraw".to_owned(),
        ];
        let ignored = ["service/out/x.json".to_owned(), "a.profraw".to_owned()];
        let found = problems(&files, &ignored);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("git rm --cached service/out/x.json"));
        assert!(found[1].starts_with("a.profraw: tracked, but .gitignore ignores it"));
    }
}
