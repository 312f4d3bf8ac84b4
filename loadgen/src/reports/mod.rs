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

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting: {e:?}")
}

fn points(samples: &[Sample], f: impl Fn(&Sample) -> Option<f64>) -> Vec<(f64, f64)> {
    samples
        .iter()
        .filter_map(|s| Some((s.t, f(s)? / MIB)))
        .collect()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
