//! `cargo ci tidy --only docs`: every tracked `.rs` file opens with a `//!`
//! doc saying what it is (STYLE.md 1): its first non-empty line starts with
//! `//!`, before any attribute or `use`.

use std::path::Path;

use anyhow::Result;

use super::Findings;

/// The first non-empty line of `source` and its number, when it is not a
/// `//!` doc; None when the file opens with one.
pub fn undocumented(source: &str) -> Option<(usize, &str)> {
    let first = source
        .lines()
        .enumerate()
        .find(|(_, line)| !line.trim().is_empty());
    match first {
        Some((_, line)) if line.trim_start().starts_with("//!") => None,
        Some((i, line)) => Some((i + 1, line.trim())),
        None => Some((1, "")),
    }
}

/// Runs the group over the tracked `files` (relative to `root`).
pub fn check(root: &Path, files: &[String]) -> Result<Findings> {
    let mut checked = 0;
    let mut problems = Vec::new();
    for file in files.iter().filter(|f| f.ends_with(".rs")) {
        let path = root.join(file);
        if !path.is_file() {
            // Tracked but deleted in the work tree: nothing to read.
            continue;
        }
        checked += 1;
        let source = match std::fs::read_to_string(&path) {
            Ok(source) => source,
            Err(e) => {
                problems.push(format!("{file}: cannot be read: {e}"));
                continue;
            }
        };
        if let Some((line, text)) = undocumented(&source) {
            let found = if text.is_empty() {
                "the file is empty".to_owned()
            } else {
                format!("it opens with `{text}`")
            };
            problems.push(format!(
                "{file}:{line}: no `//!` doc at the top ({found}): add `//! <what this file is>` as its first line"
            ));
        }
    }
    Ok(Findings {
        checked: format!("{checked} tracked .rs files open with //!"),
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_opens_with_its_doc_after_blank_lines_only() {
        assert_eq!(undocumented("//! The cache.\n\nuse x;\n"), None);
        assert_eq!(undocumented("\n\n   //! Indented is fine.\n"), None);
        assert_eq!(
            undocumented("#![allow(x)]\n//! Too late.\n"),
            Some((1, "#![allow(x)]"))
        );
        assert_eq!(
            undocumented("\n/// An item doc.\nfn f() {}\n"),
            Some((2, "/// An item doc."))
        );
        assert_eq!(
            undocumented("// A plain comment.\n"),
            Some((1, "// A plain comment."))
        );
        assert_eq!(undocumented(""), Some((1, "")));
    }
}
