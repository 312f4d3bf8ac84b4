//! `cargo ci tidy`: the repository's rules, checked from the sources alone
//! (nothing is built), every problem listed with the file to fix.
//!
//! # Layout
//!
//! - [`scenarios`]: every scenario id (from `service/src/catalogue.rs`'s
//!   `scenario_ids!` block) has its guard, write-up, README line, catalogue
//!   snapshot entry, Cargo feature and docs section.
//! - [`docs`]: every tracked `.rs` file opens with a `//!` doc.
//! - [`generated`]: no tracked file under `out/` or `target/`, or ignored.
//! - [`fn_length`]: no function longer than a limit in a crate's sources.
//! - [`cycles`]: no `use crate::...` cycles between a crate's top-level modules.
//!
//! Each group returns [`Findings`]; a group that cannot run (a file it needs
//! is missing or does not parse) reports that as its problem, so the other
//! groups still run.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use crate::build::workspace_root;

pub mod cycles;
pub mod docs;
pub mod fn_length;
pub mod generated;
pub mod scenarios;

/// `cargo ci tidy --help`.
pub const LONG_ABOUT: &str = "\
Check the repository's rules from the sources alone (nothing is built) and
list every problem with the file to fix. The groups:

  scenarios  every scenario id in service/src/catalogue.rs's scenario_ids!
             block has: a guard in service/tests/guards/main.rs's guards!
             block, a write-up fixes/<id>.md, a line \"- `<id>`: ...\" in
             service/README.md's Scenarios list, an entry in
             loadgen/tests/data/catalogue.json, its Cargo feature leak-<id> in
             service/Cargo.toml and a heading with `<id>` in docs/catalogue.md
  docs       every tracked .rs file's first non-empty line is a //! doc
  generated  no tracked file has a path component `out` or `target`
             (outside a crate's src/, where such a folder is a module), and
             none is ignored by .gitignore
  fn-length  no function or method in the --src trees is longer than
             --max-fn-lines (from its signature to its closing brace)
  cycles     no cycle of `crate::` references (use and paths, test code
             excluded) between the top-level modules of each --src tree

Passes with a one-line summary. Exit codes: 0 no problem; 1 problems (each
listed), or a check could not run (said why); 2 bad command line.";

/// A check group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Group {
    /// Every scenario complete across the repository.
    Scenarios,
    /// Every tracked .rs file opens with a //! doc.
    Docs,
    /// No tracked file under out/ or target/, or ignored by .gitignore.
    Generated,
    /// No function longer than --max-fn-lines in the --src trees.
    FnLength,
    /// No module cycles in the --src trees.
    Cycles,
}

impl Group {
    /// Every group, in the order they run.
    pub const ALL: [Group; 5] = [
        Group::Scenarios,
        Group::Docs,
        Group::Generated,
        Group::FnLength,
        Group::Cycles,
    ];

    /// The name `--only` takes.
    pub fn name(self) -> &'static str {
        match self {
            Group::Scenarios => "scenarios",
            Group::Docs => "docs",
            Group::Generated => "generated",
            Group::FnLength => "fn-length",
            Group::Cycles => "cycles",
        }
    }
}

/// Options of `cargo ci tidy`.
#[derive(Debug, Args)]
pub struct TidyOpts {
    /// Run only this group (repeatable); default: all of them.
    #[arg(long, value_enum, value_name = "GROUP")]
    pub only: Vec<Group>,
    /// A crate's source tree for fn-length and cycles, relative to the
    /// workspace root (repeatable).
    #[arg(long = "src", value_name = "DIR", default_value = "loadgen/src")]
    pub src: Vec<PathBuf>,
    /// The longest a function may be, in lines.
    #[arg(long, value_name = "LINES", default_value_t = 120)]
    pub max_fn_lines: usize,
}

/// What one group found.
#[derive(Debug, Default)]
pub struct Findings {
    /// What was checked, for the summary: "16 scenarios".
    pub checked: String,
    /// Each problem, saying where and what to do (may span lines).
    pub problems: Vec<String>,
}

impl Findings {
    /// A group that could not run.
    fn failed(err: anyhow::Error) -> Findings {
        Findings {
            checked: "could not run".to_owned(),
            problems: vec![format!("could not run: {err:#}")],
        }
    }
}

/// Runs `cargo ci tidy`: prints every problem, or a one-line summary; Ok(true)
/// when there were none.
pub fn run(opts: &TidyOpts) -> Result<bool> {
    let root = workspace_root();
    let groups: Vec<Group> = Group::ALL
        .into_iter()
        .filter(|g| opts.only.is_empty() || opts.only.contains(g))
        .collect();
    let results: Vec<(Group, Findings)> = groups
        .iter()
        .map(|&g| {
            (
                g,
                run_group(g, &root, opts).unwrap_or_else(Findings::failed),
            )
        })
        .collect();
    let text = render(&results);
    print!("{text}");
    Ok(results.iter().all(|(_, f)| f.problems.is_empty()))
}

fn run_group(group: Group, root: &Path, opts: &TidyOpts) -> Result<Findings> {
    match group {
        Group::Scenarios => scenarios::check(root),
        Group::Docs => docs::check(root, &tracked_files(root)?),
        Group::Generated => generated::check(root, &tracked_files(root)?),
        Group::FnLength => fn_length::check(root, &opts.src, opts.max_fn_lines),
        Group::Cycles => cycles::check(root, &opts.src),
    }
}

/// The report: each group's problems, then a summary line; or only the
/// summary line when nothing was found.
pub fn render(results: &[(Group, Findings)]) -> String {
    let total: usize = results.iter().map(|(_, f)| f.problems.len()).sum();
    if total == 0 {
        let checked: Vec<String> = results
            .iter()
            .map(|(g, f)| format!("{} ({})", g.name(), f.checked))
            .collect();
        return format!("tidy: ok: {}\n", checked.join(", "));
    }
    let mut out = String::new();
    for (group, findings) in results.iter().filter(|(_, f)| !f.problems.is_empty()) {
        let n = findings.problems.len();
        out += &format!(
            "tidy: {}: {n} problem{}\n",
            group.name(),
            if n == 1 { "" } else { "s" }
        );
        for problem in &findings.problems {
            out += &format!("  {}\n", problem.replace('\n', "\n    "));
        }
    }
    let tally: Vec<String> = results
        .iter()
        .map(|(g, f)| match f.problems.len() {
            0 => format!("{} ok", g.name()),
            n => format!("{} {n}", g.name()),
        })
        .collect();
    out += &format!(
        "tidy: FAILED: {total} problem{} ({})\n",
        if total == 1 { "" } else { "s" },
        tally.join(", ")
    );
    out
}

/// Every file git tracks, relative to the workspace root.
pub fn tracked_files(root: &Path) -> Result<Vec<String>> {
    let output = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["ls-files", "-z"])
        .output()
        .context("running git ls-files (is git installed?)")?;
    if !output.status.success() {
        bail!(
            "git ls-files in {} failed: {}",
            root.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .split('\0')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Every `.rs` file under `dir`, sorted, relative paths and sources.
pub fn rust_sources(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut files = Vec::new();
    collect_rs(dir, &mut files)?;
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let source = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            Ok((path, source))
        })
        .collect()
}

fn collect_rs(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading the directory {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            collect_rs(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    Ok(())
}

/// `path` relative to `root`, for messages.
pub fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Task};

    #[test]
    fn only_is_repeatable_and_the_defaults_are_loadgen_and_120_lines() {
        let cli = Cli::parse_from([
            "cargo ci",
            "tidy",
            "--only",
            "scenarios",
            "--only",
            "docs",
            "--only",
            "generated",
        ]);
        let Task::Tidy(opts) = cli.command else {
            panic!("not tidy")
        };
        assert_eq!(opts.only, [Group::Scenarios, Group::Docs, Group::Generated]);
        assert_eq!(opts.src, [PathBuf::from("loadgen/src")]);
        assert_eq!(opts.max_fn_lines, 120);
        assert!(Cli::try_parse_from(["cargo ci", "tidy", "--only", "lint"]).is_err());
    }

    #[test]
    fn the_report_is_one_line_when_clean_and_lists_every_problem_otherwise() {
        let clean = |checked: &str| Findings {
            checked: checked.to_owned(),
            problems: vec![],
        };
        let ok = render(&[
            (Group::Scenarios, clean("16 scenarios")),
            (Group::Docs, clean("90 files")),
        ]);
        assert_eq!(ok, "tidy: ok: scenarios (16 scenarios), docs (90 files)\n");
        let failed = render(&[
            (Group::Scenarios, clean("16 scenarios")),
            (
                Group::FnLength,
                Findings {
                    checked: String::new(),
                    problems: vec!["a.rs:1 f 200 lines".into(), "b.rs:9 g 130 lines".into()],
                },
            ),
        ]);
        assert_eq!(
            failed,
            "tidy: fn-length: 2 problems\n  a.rs:1 f 200 lines\n  b.rs:9 g 130 lines\n\
             tidy: FAILED: 2 problems (scenarios ok, fn-length 2)\n"
        );
    }
}
