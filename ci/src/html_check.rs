//! `cargo ci check-html FILE...`: a report page is self-contained and shows
//! in a real browser. For each HTML file:
//!
//! - every `src` is inline (`data:`) or absent: plots are inline SVG, so a
//!   page copied on its own keeps them; every local `href` names a file that
//!   exists beside the page (links to the raw artifacts are extras);
//! - headless Chromium (Debian's `chromium`) loads the page and takes a
//!   screenshot (`--screenshot DIR`, default beside the page; named
//!   `<directory>-<page>.png`), which must be
//!   a non-trivial PNG, and its log must show no resource that failed to load.
//!
//! Without Chromium the browser part is skipped with a line saying so,
//! unless `--require-browser` (CI) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::process::output_within;

/// Options of `cargo ci check-html`.
#[derive(Debug, Args)]
pub struct HtmlCheckOpts {
    /// The pages to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Where the screenshots go (default: beside each page, `<page>.png`).
    #[arg(long)]
    pub screenshot: Option<PathBuf>,
    /// Fail when no Chromium is installed instead of skipping the browser.
    #[arg(long)]
    pub require_browser: bool,
}

/// The attribute values of `attr="..."` (or `attr=...`) in `html`.
fn attributes<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!("{attr}=");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&needle) {
        // Only whole attribute names: preceded by whitespace.
        let before = rest[..i].chars().last();
        rest = &rest[i + needle.len()..];
        if !before.is_some_and(char::is_whitespace) {
            continue;
        }
        let (value, tail) = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let body = &rest[1..];
                let end = body.find(q).unwrap_or(body.len());
                (&body[..end], &body[end..])
            }
            _ => {
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == '>')
                    .unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        out.push(value);
        rest = tail;
    }
    out
}

/// Whether `url` points at a local file (not a scheme, not an anchor).
fn local(url: &str) -> bool {
    !(url.is_empty()
        || url.starts_with('#')
        || url.starts_with("data:")
        || url.starts_with("http://")
        || url.starts_with("https://")
        || url.starts_with("mailto:"))
}

/// What is wrong with `html` (at `dir`) as a self-contained page.
pub fn problems(html: &str, dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for src in attributes(html, "src") {
        if local(src) {
            out.push(format!(
                "src=\"{src}\" loads a separate file: the page is not self-contained"
            ));
        }
    }
    for href in attributes(html, "href") {
        let path = href.split(['#', '?']).next().unwrap_or(href);
        if local(href) && !dir.join(path).exists() {
            out.push(format!("href=\"{href}\" names a file that does not exist"));
        }
    }
    out
}

/// The Chromium binary, if one is installed.
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Loads `page` in headless Chromium and writes `png`; what went wrong.
fn browse(browser: &str, page: &Path, png: &Path) -> Result<Vec<String>> {
    let page = page
        .canonicalize()
        .with_context(|| format!("{}", page.display()))?;
    let out = output_within(
        Command::new(browser).args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--window-size=1200,2400",
            &format!("--screenshot={}", png.display()),
            &format!("file://{}", page.display()),
        ]),
        Duration::from_secs(120),
        "chromium --headless",
    )?;
    let log = String::from_utf8_lossy(&out.stderr);
    let mut problems: Vec<String> = log
        .lines()
        .filter(|l| l.contains("ERR_FILE_NOT_FOUND") || l.contains("Failed to load resource"))
        .map(|l| format!("the browser could not load a resource: {l}"))
        .collect();
    let size = std::fs::metadata(png).map(|m| m.len()).unwrap_or(0);
    if size < 20_000 {
        problems.push(format!(
            "the screenshot {} is {size} bytes: the page did not render (chromium said: {})",
            png.display(),
            log.lines().last().unwrap_or("")
        ));
    }
    Ok(problems)
}

/// Checks every page; true when all pass.
pub fn run(opts: &HtmlCheckOpts) -> Result<bool> {
    let browser = chromium();
    if browser.is_none() {
        let what = "no chromium: the pages were not loaded in a browser (apt-get install chromium)";
        if opts.require_browser {
            println!("FAIL {what}");
            return Ok(false);
        }
        println!("SKIPPED {what}");
    }
    let mut ok = true;
    for file in &opts.files {
        let html =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let dir = file.parent().unwrap_or(Path::new("."));
        let mut found = problems(&html, dir);
        if let Some(b) = browser {
            // `out/hunt/report.html` -> `hunt-report.png`: pages of the same
            // name in different directories keep their own screenshot.
            let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("page");
            let name = match dir.file_name().and_then(|d| d.to_str()) {
                Some(d) => format!("{d}-{stem}.png"),
                None => format!("{stem}.png"),
            };
            let png = match &opts.screenshot {
                Some(d) => {
                    std::fs::create_dir_all(d)?;
                    d.join(name)
                }
                None => dir.join(name),
            };
            found.extend(browse(b, file, &png)?);
            if found.is_empty() {
                println!(
                    "ok   {}: self-contained, {} inline plots, screenshot {}",
                    file.display(),
                    html.matches("<svg").count(),
                    png.display()
                );
            }
        } else if found.is_empty() {
            println!(
                "ok   {}: self-contained, {} inline plots",
                file.display(),
                html.matches("<svg").count()
            );
        }
        for p in &found {
            println!("FAIL {}: {p}", file.display());
        }
        ok &= found.is_empty();
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_plots_pass_and_separate_or_missing_files_fail() {
        let dir = std::env::temp_dir();
        let good = "<p><a href=\"#top\">top</a> <a href=https://example.org>x</a></p><figure><svg width=\"10\"></svg></figure>";
        assert!(problems(good, &dir).is_empty());
        let bad = "<img src=memory.svg><a href=\"no-such-file-here.txt\">diff</a><img src=\"data:image/png;base64,AA\">";
        let found = problems(bad, &dir);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("memory.svg"));
        assert!(found[1].contains("no-such-file-here.txt"));
    }

    #[test]
    fn attribute_names_must_be_whole() {
        assert_eq!(attributes("<x data-src=a src='b' srcset=c>", "src"), ["b"]);
    }
}
