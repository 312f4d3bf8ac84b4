//! The reports stage: what a command shows. SVG plots (plotters), HTML
//! pages, markdown, and the human summaries printed on stderr.
//!
//! - [`run`]: `loadgen run`'s `memory.svg`, `tasks.svg`, `latency.svg`,
//!   `report.html` ([`write`]) and its stderr summary.
//! - [`canary`]: `canary.svg` and the side-by-side summary.
//! - [`oom`]: `oom.svg` and the predicted-against-actual summary.
//! - [`hunt`]: `hunt.md` and the hunt's `report.html`.

pub mod canary;
pub mod hunt;
pub mod oom;
pub mod run;

use anyhow::anyhow;
use leaklab_model::run::Sample;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::{Cartesian2d, ChartContext, DrawingArea, RGBColor, SVGBackend};

use crate::human::MIB;

pub use run::write;

/// The size of one plot panel.
const SIZE: (u32, u32) = (900, 380);

/// A named, coloured line of (seconds, MiB) points.
type Line = (&'static str, RGBColor, Vec<(f64, f64)>);

/// One panel of an SVG.
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// A chart with seconds across and a float up.
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// An SVG file's markup for inlining in an HTML page (its XML prolog
/// dropped), so a report copied on its own keeps its plots; a note when the
/// file cannot be read.
pub fn inline_svg(path: &std::path::Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(svg) => match svg.find("<svg") {
            Some(i) => format!("<figure>{}</figure>", &svg[i..]),
            None => format!("<p>(not an SVG: {})</p>", esc(&path.display().to_string())),
        },
        Err(e) => format!(
            "<p>(plot {} missing: {})</p>",
            esc(&path.display().to_string()),
            esc(&e.to_string())
        ),
    }
}

/// Text escaped for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Markdown (the hunt's `hunt.md`) as HTML: tables as tables.
pub fn markdown_html(md: &str) -> String {
    use pulldown_cmark::{html, Options, Parser};
    let mut out = String::new();
    html::push_html(&mut out, Parser::new_ext(md, Options::ENABLE_TABLES));
    out
}

/// Styles shared by the HTML reports: plots scale to the page.
pub const STYLE: &str = concat!(
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}",
    "figure{margin:1em 0}figure svg{max-width:100%;height:auto}",
    "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}",
    "pre{white-space:pre-wrap;background:#f6f6f6;padding:0.8em;font-size:90%}.leak{color:#b00}",
);

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting: {e:?}")
}

fn points(samples: &[Sample], f: impl Fn(&Sample) -> Option<f64>) -> Vec<(f64, f64)> {
    samples
        .iter()
        .filter_map(|s| Some((s.t, f(s)? / MIB)))
        .collect()
}
