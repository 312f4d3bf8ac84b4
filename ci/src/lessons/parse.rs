//! The `check` blocks of a lesson: markdown fenced blocks whose info string
//! is exactly `check`, each one `$ command` line and the expectations on what
//! it shows. Parsing is strict: a line the runner would not understand is an
//! error naming its file and line, never a check that silently passes.
//!
//! ```text
//! $ target/release/loadgen run --spawn --scenario unbounded-cache --json
//! exit: 3
//! json: /verdict/class == "retention"
//! json: /ground_truth/error_pct > -25
//! stdout: contains TEXT
//! stderr: contains TEXT
//! file: out/lessons/x/summary.json contains TEXT
//! ```

use std::fmt;

use serde_json::Value;

/// One `check` block: a command and what it must show.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// The lesson file it is in, as given to [`parse`] (for messages).
    pub file: String,
    /// The line of its `$` command, 1-based.
    pub line: usize,
    /// The command as written, without the `$ `.
    pub command: String,
    /// The expectations in the order written.
    pub expectations: Vec<Expectation>,
}

impl Block {
    /// The exit code the block expects, if it says.
    pub fn expected_exit(&self) -> Option<i32> {
        block_exit(&self.expectations)
    }
}

fn block_exit(expectations: &[Expectation]) -> Option<i32> {
    expectations.iter().find_map(|e| match e {
        Expectation::Exit(code) => Some(*code),
        _ => None,
    })
}

/// A comparison in a `json:` expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Lt,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            _ => return None,
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Lt => "<",
        })
    }
}

/// Which output stream a `contains` expectation reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        })
    }
}

/// One expectation line.
#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// `exit: N`.
    Exit(i32),
    /// `json: /pointer OP VALUE`, on stdout parsed as JSON.
    Json {
        pointer: String,
        op: Op,
        value: Value,
    },
    /// `stdout: contains TEXT` or `stderr: contains TEXT`.
    Contains { stream: Stream, text: String },
    /// `file: PATH contains TEXT`, PATH from the repository root.
    File { path: String, text: String },
}

impl fmt::Display for Expectation {
    /// As written in the lesson.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expectation::Exit(code) => write!(f, "exit: {code}"),
            Expectation::Json { pointer, op, value } => write!(f, "json: {pointer} {op} {value}"),
            Expectation::Contains { stream, text } => write!(f, "{stream}: contains {text}"),
            Expectation::File { path, text } => write!(f, "file: {path} contains {text}"),
        }
    }
}

/// A malformed block: `file:line: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// A fence being read: its backtick count, whether it is a `check` block,
/// the line it opened on and the block's lines so far.
struct Open {
    ticks: usize,
    check: bool,
    line: usize,
    body: Vec<(usize, String)>,
}

/// Every `check` block of one markdown file, or every problem found in it.
/// Fences of other kinds are skipped whole (a "```check" inside a "````md"
/// example is not a block).
pub fn parse(file: &str, text: &str) -> Result<Vec<Block>, Vec<ParseError>> {
    let mut blocks = Vec::new();
    let mut errors = Vec::new();
    let mut open: Option<Open> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        let ticks = trimmed.chars().take_while(|&c| c == '`').count();
        match &mut open {
            None if ticks >= 3 => {
                open = Some(Open {
                    ticks,
                    check: trimmed[ticks..].trim() == "check",
                    line,
                    body: Vec::new(),
                });
            }
            None => {}
            Some(fence) if ticks >= fence.ticks && trimmed.len() == ticks => {
                let fence = open.take().expect("a fence is open");
                if fence.check {
                    match block(file, fence.line, &fence.body) {
                        Ok(b) => blocks.push(b),
                        Err(mut e) => errors.append(&mut e),
                    }
                }
            }
            Some(fence) => fence.body.push((line, raw.trim_end().to_owned())),
        }
    }
    if let Some(fence) = open.filter(|f| f.check) {
        errors.push(ParseError {
            file: file.to_owned(),
            line: fence.line,
            message: "a check block that is never closed (no closing ```)".into(),
        });
    }
    if errors.is_empty() {
        Ok(blocks)
    } else {
        Err(errors)
    }
}

/// One block from its lines (after the opening fence, before the closing one).
fn block(
    file: &str,
    fence_line: usize,
    body: &[(usize, String)],
) -> Result<Block, Vec<ParseError>> {
    let error = |line: usize, message: String| ParseError {
        file: file.to_owned(),
        line,
        message,
    };
    let mut errors = Vec::new();
    let mut command: Option<(usize, String)> = None;
    let mut expectations = Vec::new();
    for (line, text) in body.iter().filter(|(_, t)| !t.trim().is_empty()) {
        let text = text.trim();
        if let Some(cmd) = text.strip_prefix('$') {
            let cmd = cmd.trim();
            if command.is_some() {
                errors.push(error(
                    *line,
                    "a second `$` line: one command per check block".into(),
                ));
            } else if cmd.is_empty() {
                errors.push(error(*line, "an empty `$` line: no command".into()));
            } else {
                if !expectations.is_empty() {
                    errors.push(error(
                        *line,
                        "the `$` line must come before the expectations".into(),
                    ));
                }
                command = Some((*line, cmd.to_owned()));
            }
            continue;
        }
        match expectation(text) {
            Ok(Expectation::Exit(_)) if block_exit(&expectations).is_some() => {
                errors.push(error(*line, "a second `exit:` line".into()))
            }
            Ok(e) => expectations.push(e),
            Err(message) => errors.push(error(*line, message)),
        }
    }
    let Some((line, command)) = command else {
        errors.push(error(
            fence_line,
            "a check block with no `$ command` line".into(),
        ));
        return Err(errors);
    };
    if expectations.is_empty() && errors.is_empty() {
        errors.push(error(
            line,
            "a check block with no expectations: it could not fail".into(),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Block {
        file: file.to_owned(),
        line,
        command,
        expectations,
    })
}

/// One expectation line, or what is wrong with it.
pub fn expectation(text: &str) -> Result<Expectation, String> {
    let Some((kind, rest)) = text.split_once(':') else {
        return Err(format!(
            "`{text}` is not an expectation (exit:, json:, stdout:, stderr:, file:)"
        ));
    };
    let rest = rest.trim();
    match kind.trim() {
        "exit" => rest
            .parse()
            .map(Expectation::Exit)
            .map_err(|_| format!("`exit: {rest}`: the exit code must be an integer")),
        "json" => json(rest),
        "stdout" => contains(rest, "stdout").map(|text| Expectation::Contains {
            stream: Stream::Stdout,
            text,
        }),
        "stderr" => contains(rest, "stderr").map(|text| Expectation::Contains {
            stream: Stream::Stderr,
            text,
        }),
        "file" => {
            let Some((path, text)) = rest.split_once(" contains ") else {
                return Err(format!(
                    "`file: {rest}`: expected `file: PATH contains TEXT`"
                ));
            };
            let (path, text) = (path.trim(), text.trim());
            if path.is_empty() || text.is_empty() {
                return Err(format!(
                    "`file: {rest}`: expected `file: PATH contains TEXT`"
                ));
            }
            Ok(Expectation::File {
                path: path.to_owned(),
                text: text.to_owned(),
            })
        }
        other => Err(format!(
            "unknown expectation `{other}:` (known: exit:, json:, stdout:, stderr:, file:)"
        )),
    }
}

/// `contains TEXT` after `stdout:` or `stderr:`.
fn contains(rest: &str, stream: &str) -> Result<String, String> {
    match rest.strip_prefix("contains ").map(str::trim) {
        Some(text) if !text.is_empty() => Ok(text.to_owned()),
        _ => Err(format!(
            "`{stream}: {rest}`: expected `{stream}: contains TEXT`"
        )),
    }
}

/// `/pointer OP VALUE`.
fn json(rest: &str) -> Result<Expectation, String> {
    let usage =
        || format!("`json: {rest}`: expected `json: /pointer OP VALUE` (OP one of == != > <)");
    let mut parts = rest.splitn(3, ' ');
    let (Some(pointer), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(usage());
    };
    if !pointer.starts_with('/') {
        return Err(format!(
            "`json: {rest}`: the pointer `{pointer}` must start with /"
        ));
    }
    let op = Op::parse(op).ok_or_else(usage)?;
    let value: Value = serde_json::from_str(value.trim()).map_err(|e| {
        format!(
            "`json: {rest}`: bad JSON value `{}` ({e}); strings are quoted: \"retention\"",
            value.trim()
        )
    })?;
    if matches!(op, Op::Gt | Op::Lt) && !value.is_number() {
        return Err(format!(
            "`json: {rest}`: {op} compares numbers only, `{value}` is not one"
        ));
    }
    Ok(Expectation::Json {
        pointer: pointer.to_owned(),
        op,
        value,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn one(text: &str) -> Block {
        let blocks = parse("l.md", text).unwrap();
        assert_eq!(blocks.len(), 1, "{blocks:?}");
        blocks.into_iter().next().unwrap()
    }

    fn errors(text: &str) -> Vec<String> {
        parse("l.md", text)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_check_block_is_its_command_and_every_kind_of_expectation_in_order() {
        let b = one(concat!(
            "# Lesson\n\ntext\n\n```check\n",
            "$ target/release/loadgen run --spawn --json\n",
            "exit: 3\n",
            "json: /verdict/class == \"retention\"\n",
            "json: /ground_truth/error_pct > -25\n",
            "json: /a != null\n",
            "json: /b < 2.5\n",
            "\n",
            "stdout: contains --mystery\n",
            "stderr: contains comes after the run ends\n",
            "file: out/x/canary.svg contains <svg\n",
            "```\n",
        ));
        assert_eq!(b.file, "l.md");
        assert_eq!(b.line, 6);
        assert_eq!(b.command, "target/release/loadgen run --spawn --json");
        assert_eq!(b.expected_exit(), Some(3));
        assert_eq!(
            b.expectations,
            vec![
                Expectation::Exit(3),
                Expectation::Json {
                    pointer: "/verdict/class".into(),
                    op: Op::Eq,
                    value: json!("retention")
                },
                Expectation::Json {
                    pointer: "/ground_truth/error_pct".into(),
                    op: Op::Gt,
                    value: json!(-25)
                },
                Expectation::Json {
                    pointer: "/a".into(),
                    op: Op::Ne,
                    value: Value::Null
                },
                Expectation::Json {
                    pointer: "/b".into(),
                    op: Op::Lt,
                    value: json!(2.5)
                },
                Expectation::Contains {
                    stream: Stream::Stdout,
                    text: "--mystery".into()
                },
                Expectation::Contains {
                    stream: Stream::Stderr,
                    text: "comes after the run ends".into()
                },
                Expectation::File {
                    path: "out/x/canary.svg".into(),
                    text: "<svg".into()
                },
            ]
        );
        assert_eq!(
            b.expectations[1].to_string(),
            "json: /verdict/class == \"retention\""
        );
    }

    #[test]
    fn other_fences_are_skipped_and_blocks_come_in_file_order() {
        let text = concat!(
            "```sh\n$ not a check\n```\n",
            "````md\n```check\n$ inside an example\nexit: 0\n```\n````\n",
            "```check\n$ first\nexit: 0\n```\n",
            "  ```check\n  $ second\n  exit: 1\n  ```\n",
            "```checks\n$ not exactly check\n```\n",
        );
        let blocks = parse("l.md", text).unwrap();
        let commands: Vec<_> = blocks
            .iter()
            .map(|b| (b.command.as_str(), b.line))
            .collect();
        assert_eq!(commands, [("first", 11), ("second", 15)]);
    }

    #[test]
    fn malformed_blocks_are_errors_naming_file_and_line() {
        assert_eq!(
            errors("\n```check\nexit: 0\n```\n"),
            ["l.md:2: a check block with no `$ command` line"]
        );
        let e = errors("```check\n$ a\nexit: 0\nstatus: 0\n```\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("l.md:4: unknown expectation `status:`"),
            "{e:?}"
        );
        let e = errors("```check\n$ a\njson: /verdict/class == retention\n```\n");
        assert!(
            e[0].starts_with(
                "l.md:3: `json: /verdict/class == retention`: bad JSON value `retention`"
            ),
            "{e:?}"
        );
        let e = errors("```check\n$ a\njson: /x > \"big\"\n```\n");
        assert!(e[0].contains("compares numbers only"), "{e:?}");
        let e = errors("```check\n$ a\njson: verdict/class == 1\n```\n");
        assert!(e[0].contains("must start with /"), "{e:?}");
        let e = errors("```check\n$ a\njson: /x =~ 1\n```\n");
        assert!(e[0].contains("OP one of"), "{e:?}");
        let e = errors("```check\n$ a\n$ b\nexit: 0\n```\n");
        assert_eq!(
            e,
            ["l.md:3: a second `$` line: one command per check block"]
        );
        let e = errors("```check\nexit: 0\n$ a\nexit: 1\n```\n");
        assert_eq!(
            e,
            [
                "l.md:3: the `$` line must come before the expectations",
                "l.md:4: a second `exit:` line"
            ]
        );
        let e = errors("```check\n$ a\nexit: zero\n```\n");
        assert!(e[0].starts_with("l.md:3: `exit: zero`"), "{e:?}");
        let e = errors("```check\n$ a\nstdout: has x\nfile: out/a\n```\n");
        assert_eq!(e.len(), 2);
        assert!(e[0].contains("stdout: contains TEXT") && e[1].contains("PATH contains TEXT"));
        assert_eq!(
            errors("```check\n$ a\n```\n"),
            ["l.md:2: a check block with no expectations: it could not fail"]
        );
        assert_eq!(
            errors("x\n```check\n$ a\nexit: 0\n"),
            ["l.md:2: a check block that is never closed (no closing ```)"]
        );
    }
}
