//! `cargo ci lessons`: every lesson's machine-checkable promises run, so the
//! curriculum cannot rot. A promise is a fenced block with the info string
//! `check` in `docs/lessons/NN-*.md` (see `docs/lessons/README.md`).
//!
//! # Layout
//!
//! - [`parse`]: the `check` blocks of a lesson, strictly (a malformed block
//!   is an error naming file:line).
//! - [`exec`]: one command, `sh -c` from the root, both streams captured,
//!   its process group killed past the limit.
//! - [`expect`]: each expectation judged, "expected ..., found ...".
//!
//! This module finds the lessons, selects blocks (`--only`, `--quick`),
//! builds the binaries, points `target/release/` at the real target dir and
//! prints a line per block and the tally.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::build::workspace_root;

pub mod exec;
pub mod expect;
pub mod parse;

use parse::Block;

/// `cargo ci lessons --help`.
pub const LONG_ABOUT: &str = "\
Run every lesson's machine-checkable promises: the fenced blocks with the
info string `check` in docs/lessons/NN-*.md, in lesson order and, within a
lesson, in file order (a block may read a file an earlier one wrote).

Each block is one `$ command` line, run with `sh -c` from the repository
root, then its expectations: `exit: N`, `json: /pointer OP VALUE` (stdout
as JSON; OP one of == != > <, VALUE JSON), `stdout: contains TEXT`,
`stderr: contains TEXT`, `file: PATH contains TEXT`. A malformed block is an
error naming file:line, and nothing runs.

First `cargo build --release -p loadgen -p leaklab-service`. A word starting
with `target/release/` in a command is pointed at the target dir those
binaries were built into: $CARGO_TARGET_DIR, else <root>/target.

A command still running after --timeout is killed with its whole process
group (loadgen and the service it spawned) and its block fails. Each block's
stdout and stderr are kept in out/ci-lessons/.

--quick, to keep CI short, runs the blocks that start no load run (a command
that runs no `loadgen run|canary|hunt|oom`, such as `scenarios --json`,
`--help`, `judge FILE`, or one whose promise is exit 2: a usage error,
refused before any load) and, of the blocks that do run load, only the first
of each lesson. (A light block that reads a file a skipped load block
writes would fail under --quick: keep such a block reading its lesson's
first load block, as lesson 01's `judge` does.)

Prints a progress line per block on stderr, a PASS/FAIL line per block on
stdout (a FAIL with its first unmet expectation), then the tally
`lessons: N passed, M failed` alone on its line.

Exit codes: 0 every block passed; 1 a block failed, a lesson is malformed or
the build failed; 2 bad command line.";

/// Options of `cargo ci lessons`.
#[derive(Debug, Args)]
pub struct LessonsOpts {
    /// Only this lesson (its number: 02 or 2); repeatable.
    #[arg(long = "only", value_name = "NN")]
    pub only: Vec<String>,
    /// List the blocks (lesson:line, load or light, command) and stop:
    /// nothing is built or run.
    #[arg(long)]
    pub list: bool,
    /// Print each selected block as it would run (the command with
    /// target/release/ resolved, its expectations) and stop: nothing is
    /// built or run.
    #[arg(long)]
    pub dry_run: bool,
    /// How long one command may run before it is killed and its block fails.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Only the blocks that start no load run, plus the first load block of
    /// each lesson (see the long help).
    #[arg(long)]
    pub quick: bool,
}

/// Parses `500ms`, `120s`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected e.g. 120s, 2m, 500ms"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m)")),
    }
}

/// A lesson file: its number ("02") and its blocks.
#[derive(Debug)]
pub struct Lesson {
    pub number: String,
    pub blocks: Vec<Block>,
}

/// Every lesson `docs/lessons/NN-*.md` under `root`, in order, parsed; an
/// error listing every malformed block.
pub fn load(root: &Path) -> Result<Vec<Lesson>> {
    let dir = root.join("docs/lessons");
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?.to_owned();
            let number = lesson_number(&name)?;
            Some((number, path))
        })
        .collect();
    files.sort();
    let mut lessons = Vec::new();
    let mut problems = Vec::new();
    for (number, path) in files {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let label = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        match parse::parse(&label, &text) {
            Ok(blocks) => lessons.push(Lesson { number, blocks }),
            Err(errors) => problems.extend(errors.iter().map(ToString::to_string)),
        }
    }
    if !problems.is_empty() {
        bail!("malformed check blocks:\n  {}", problems.join("\n  "));
    }
    Ok(lessons)
}

/// "02" for `02-first-leak.md`; None for README.md, answers.md.
fn lesson_number(name: &str) -> Option<String> {
    let (number, rest) = name.split_once('-')?;
    (number.len() == 2 && number.bytes().all(|b| b.is_ascii_digit()) && rest.ends_with(".md"))
        .then(|| number.to_owned())
}

/// Whether a block starts a load run: a `loadgen run|canary|hunt|oom`
/// that is not promised to be refused as a usage error (exit 2).
pub fn is_load(block: &Block) -> bool {
    if block.expected_exit() == Some(2) {
        return false;
    }
    let words: Vec<&str> = block.command.split_whitespace().collect();
    words.windows(2).any(|w| {
        (w[0] == "loadgen" || w[0].ends_with("/loadgen"))
            && matches!(w[1], "run" | "canary" | "hunt" | "oom")
    })
}

/// The blocks to run, in order: `--only`'s lessons (all when empty), and
/// with `quick` the light blocks plus each lesson's first load block.
pub fn select<'a>(lessons: &'a [Lesson], only: &[String], quick: bool) -> Result<Vec<&'a Block>> {
    let wanted: Vec<String> = only.iter().map(|n| format!("{n:0>2}")).collect();
    for n in &wanted {
        if !lessons.iter().any(|l| &l.number == n) {
            bail!("--only {n}: no lesson docs/lessons/{n}-*.md");
        }
    }
    let mut selected = Vec::new();
    for lesson in lessons
        .iter()
        .filter(|l| wanted.is_empty() || wanted.contains(&l.number))
    {
        let mut load_taken = false;
        for block in &lesson.blocks {
            let load = is_load(block);
            if !quick || !load || !load_taken {
                selected.push(block);
            }
            load_taken |= load;
        }
    }
    Ok(selected)
}

/// Where cargo puts the binaries (shared with the builds of `cargo ci`'s other tasks).
pub use crate::build::target_dir;

/// `command` with each word that starts with `target/release/` pointed at
/// `release` (the real `<target dir>/release`), quoted for `sh` if needed.
pub fn resolve(command: &str, release: &Path) -> String {
    let release = release.display().to_string();
    let release = if release
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
    {
        release
    } else {
        format!("'{}'", release.replace('\'', r"'\''"))
    };
    const PREFIX: &str = "target/release/";
    let starts_word = |at: usize| {
        command[..at]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || "=;&|(`".contains(c))
    };
    let mut out = String::with_capacity(command.len());
    let mut copied = 0;
    for (at, _) in command
        .match_indices(PREFIX)
        .filter(|&(at, _)| starts_word(at))
    {
        out.push_str(&command[copied..at]);
        out.push_str(&release);
        out.push('/');
        copied = at + PREFIX.len();
    }
    out.push_str(&command[copied..]);
    out
}

/// `cargo build --release -p loadgen -p leaklab-service`, as the lessons'
/// README asks, with the cargo that runs this task.
fn build_binaries(root: &Path) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "-p",
            "loadgen",
            "-p",
            "leaklab-service",
        ])
        .status()
        .context("running cargo build --release -p loadgen -p leaklab-service")?;
    if !status.success() {
        bail!("cargo build --release -p loadgen -p leaklab-service failed ({status})");
    }
    Ok(())
}

/// "02-first-leak.md:139", for a line.
fn place(block: &Block) -> String {
    let name = Path::new(&block.file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| block.file.clone());
    format!("{name}:{}", block.line)
}

/// Runs `cargo ci lessons`; Ok(true) when every selected block passed.
pub fn run(opts: &LessonsOpts) -> Result<bool> {
    let root = workspace_root();
    let lessons = load(&root)?;
    let selected = select(&lessons, &opts.only, opts.quick)?;
    if opts.list {
        for block in &selected {
            let kind = if is_load(block) { "load " } else { "light" };
            println!("{:<34} {kind}  {}", place(block), block.command);
        }
        println!("{} blocks", selected.len());
        return Ok(true);
    }
    let target = target_dir(&root, std::env::var("CARGO_TARGET_DIR").ok().as_deref());
    let release = target.join("release");
    if opts.dry_run {
        println!("target/release/ is {}", release.display());
        for block in &selected {
            println!(
                "{}\n  $ {}",
                place(block),
                resolve(&block.command, &release)
            );
            for e in &block.expectations {
                println!("  {e}");
            }
        }
        return Ok(true);
    }
    eprintln!("cargo ci lessons: building the release binaries");
    build_binaries(&root)?;
    println!(
        "cargo ci lessons: {} lessons from {}; target/release/ is {}",
        lessons.len(),
        root.join("docs/lessons").display(),
        release.display()
    );
    run_blocks(&root, &release, &selected, opts.timeout)
}

/// Runs the blocks in order, a line each; then the tally.
fn run_blocks(root: &Path, release: &Path, blocks: &[&Block], limit: Duration) -> Result<bool> {
    let started = Instant::now();
    let kept = root.join("out/ci-lessons");
    std::fs::create_dir_all(&kept).with_context(|| format!("creating {}", kept.display()))?;
    let (mut passed, mut failed) = (0, 0);
    for (i, block) in blocks.iter().enumerate() {
        eprintln!(
            "cargo ci lessons: [{}/{}] {}: {}",
            i + 1,
            blocks.len(),
            place(block),
            block.command
        );
        let t = Instant::now();
        let outcome = exec::run_within(&resolve(&block.command, release), root, limit)?;
        let stem = place(block).replace([':', '.'], "-");
        std::fs::write(kept.join(format!("{stem}.stdout")), &outcome.stdout)?;
        std::fs::write(kept.join(format!("{stem}.stderr")), &outcome.stderr)?;
        let failures = expect::failures(&block.expectations, &outcome, root);
        let secs = t.elapsed().as_secs_f64();
        match failures.first() {
            None => {
                passed += 1;
                println!(
                    "PASS {:<34} {:>5.1} s  {}",
                    place(block),
                    secs,
                    block.command
                );
            }
            Some(first) => {
                failed += 1;
                let more = match failures.len() - 1 {
                    0 => String::new(),
                    n => format!(" (and {n} more)"),
                };
                println!(
                    "FAIL {:<34} {:>5.1} s  {}\n     {first}{more}; output in out/ci-lessons/{stem}.*",
                    place(block),
                    secs,
                    block.command
                );
            }
        }
    }
    println!(
        "{} blocks in {:.0} s",
        blocks.len(),
        started.elapsed().as_secs_f64()
    );
    println!("lessons: {passed} passed, {failed} failed");
    Ok(failed == 0)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Task};

    fn lesson(number: &str, text: &str) -> Lesson {
        Lesson {
            number: number.into(),
            blocks: parse::parse(&format!("{number}-x.md"), text).unwrap(),
        }
    }

    const LESSON: &str = "\
```check
$ target/release/leaklab-service scenarios --json
json: /0/id == \"unbounded-cache\"
```
```check
$ target/release/loadgen run --spawn --duration 15s --json
exit: 0
```
```check
$ target/release/loadgen judge out/lessons/01/samples.jsonl
exit: 0
```
```check
$ target/release/loadgen run --spawn --scenario churn --json
exit: 0
```
```check
$ target/release/loadgen oom --scenario unbounded-cache --rate max
exit: 2
```
```check
$ target/release/loadgen canary --spawn --json
exit: 3
```
";

    #[test]
    fn quick_keeps_the_light_blocks_and_the_first_load_block_of_each_lesson() {
        let lessons = [lesson("01", LESSON), lesson("02", LESSON)];
        let lines = |blocks: Vec<&Block>| -> Vec<(String, usize)> {
            blocks.iter().map(|b| (b.file.clone(), b.line)).collect()
        };
        let quick = lines(select(&lessons, &[], true).unwrap());
        let expected: Vec<(String, usize)> = ["01", "02"]
            .iter()
            .flat_map(|n| [2, 6, 10, 18].map(|l| (format!("{n}-x.md"), l)))
            .collect();
        assert_eq!(quick, expected);
        assert_eq!(select(&lessons, &[], false).unwrap().len(), 12);
        let only = lines(select(&lessons, &["2".into()], false).unwrap());
        assert_eq!(only.len(), 6);
        assert!(only.iter().all(|(f, _)| f == "02-x.md"));
        let err = select(&lessons, &["11".into()], false).unwrap_err();
        assert_eq!(err.to_string(), "--only 11: no lesson docs/lessons/11-*.md");
    }

    #[test]
    fn target_release_is_pointed_at_the_real_target_dir() {
        let release = Path::new("/work/target-ci/release");
        assert_eq!(
            resolve("target/release/loadgen run --spawn", release),
            "/work/target-ci/release/loadgen run --spawn"
        );
        assert_eq!(
            resolve(
                "X=target/release/a; target/release/b --out out/target/release/c",
                release
            ),
            "X=/work/target-ci/release/a; /work/target-ci/release/b --out out/target/release/c"
        );
        assert_eq!(
            resolve("target/release/loadgen", Path::new("/my dir/release")),
            "'/my dir/release'/loadgen"
        );
        let root = Path::new("/repo");
        assert_eq!(target_dir(root, None), Path::new("/repo/target"));
        assert_eq!(target_dir(root, Some("")), Path::new("/repo/target"));
        assert_eq!(target_dir(root, Some("/work/t")), Path::new("/work/t"));
        assert_eq!(target_dir(root, Some("t2")), Path::new("/repo/t2"));
    }

    #[test]
    fn the_options_parse_with_a_two_minute_default_timeout() {
        let cli = Cli::parse_from([
            "cargo ci",
            "lessons",
            "--only",
            "02",
            "--only",
            "7",
            "--quick",
            "--timeout",
            "90s",
        ]);
        let Task::Lessons(opts) = cli.command else {
            panic!("not lessons")
        };
        assert_eq!(opts.only, ["02", "7"]);
        assert!(opts.quick && !opts.list && !opts.dry_run);
        assert_eq!(opts.timeout, Duration::from_secs(90));
        let Task::Lessons(opts) = Cli::parse_from(["cargo ci", "lessons"]).command else {
            panic!("not lessons")
        };
        assert_eq!(opts.timeout, Duration::from_secs(120));
        assert!(Cli::try_parse_from(["cargo ci", "lessons", "--timeout", "2h"]).is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    }

    #[test]
    fn the_lessons_in_the_repository_parse() {
        let lessons = load(&workspace_root()).unwrap();
        assert!(lessons.len() >= 10, "{}", lessons.len());
        assert!(lessons.iter().all(|l| !l.blocks.is_empty()));
        assert!(lesson_number("README.md").is_none() && lesson_number("answers.md").is_none());
    }
}
