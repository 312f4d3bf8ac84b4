//! The bisect's picture: burn rate by release, with a deploy marker per release.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// One release on the plot: its name, its burn rate if measured, and whether it is the first bad one.
pub struct Point<'a> {
    pub name: &'a str,
    pub burn_rate_mib_per_h: Option<f64>,
    pub leak: Option<bool>,
    pub first_bad: bool,
}

/// Draws `points` to an SVG at `path`.
pub fn burn_rate_by_release(path: &Path, points: &[Point<'_>]) -> Result<()> {
    let n = points.len().max(1);
    let top = points
        .iter()
        .filter_map(|p| p.burn_rate_mib_per_h)
        .fold(1.0f64, f64::max)
        * 1.2;
    let bottom = points
        .iter()
        .filter_map(|p| p.burn_rate_mib_per_h)
        .fold(0.0f64, f64::min)
        .min(0.0);
    let root = SVGBackend::new(path, (960, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("burn rate by release (cargo ci bisect)", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), bottom..top)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round() as usize;
            points.get(i).map(|p| p.name.to_owned()).unwrap_or_default()
        })
        .y_desc("MiB/hour (live heap)")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    // A deploy marker per release: a thin vertical line, red from the first bad one on.
    let mut bad_seen = false;
    for (i, p) in points.iter().enumerate() {
        bad_seen |= p.first_bad;
        let color = if bad_seen {
            RED.mix(0.35)
        } else {
            BLUE.mix(0.2)
        };
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(i as f64, bottom), (i as f64, top)],
                color,
            )))
            .map_err(|e| anyhow!("{e}"))?;
    }
    for (i, p) in points.iter().enumerate() {
        let x = i as f64;
        match p.burn_rate_mib_per_h {
            Some(y) => {
                let color = if p.leak == Some(true) { RED } else { GREEN };
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x - 0.3, 0.0), (x + 0.3, y)],
                        color.filled(),
                    )))
                    .map_err(|e| anyhow!("{e}"))?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("{y:.0}"),
                        (x - 0.2, y),
                        ("sans-serif", 13),
                    )))
                    .map_err(|e| anyhow!("{e}"))?;
            }
            None => {
                chart
                    .draw_series(std::iter::once(Text::new(
                        "not measured",
                        (x - 0.35, top * 0.05),
                        ("sans-serif", 12),
                    )))
                    .map_err(|e| anyhow!("{e}"))?;
            }
        }
        if p.first_bad {
            chart
                .draw_series(std::iter::once(Text::new(
                    "first bad",
                    (x - 0.25, top * 0.92),
                    ("sans-serif", 14).into_font().color(&RED),
                )))
                .map_err(|e| anyhow!("{e}"))?;
        }
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
