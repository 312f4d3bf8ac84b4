//! `loadgen oom`'s report: `oom.svg` (cgroup usage against the limit, and
//! the predicted time of the kill against when it was predicted) and the
//! predicted-against-actual summary on stderr.

use std::path::Path;

use anyhow::Result;
use leaklab_model::oom::{OomReport, Prediction};
use leaklab_model::run::Sample;
use plotters::prelude::*;

use super::{err, Area};
use crate::human::{human_bytes, MIB};

pub fn print_human(r: &OomReport, out: &Path) {
    let limit = human_bytes(r.limit_bytes as f64);
    eprintln!();
    match (r.killed, r.actual_time_to_oom_s) {
        (true, Some(actual)) => {
            eprintln!(
                "OOM-killed: {} under {limit} after {actual:.1}s ({} requests at {:.0}/s; {})",
                r.scenario,
                r.requests,
                r.rate,
                r.evidence.exit.as_deref().unwrap_or("")
            );
            match (r.predicted_time_to_oom_s, r.prediction_error_pct) {
                (Some(p), Some(e)) => eprintln!(
                    "predicted at {:.1}s (half the actual time): kill at {p:.1}s, error {e:+.1}%",
                    actual / 2.0
                ),
                _ => eprintln!("no prediction at half the actual time"),
            }
            let evidence = &r.evidence;
            if let (Some(b), Some(a)) = (
                evidence.cgroup_oom_kills_before,
                evidence.cgroup_oom_kills_after,
            ) {
                eprintln!("cgroup oom_kill counter: {b} -> {a}");
            }
            if let Some(o) = evidence.docker_oom_killed {
                eprintln!("docker State.OOMKilled: {o}");
            }
            eprintln!("predictions as the run went (kill predicted at, made at):");
            for frac in [0.2, 0.35, 0.5, 0.65, 0.8] {
                if let Some(p) = r.predictions.iter().rev().find(|p| p.at_s <= actual * frac) {
                    eprintln!(
                        "  at {:>5.1}s ({:>3.0}% of the way): kill at {:>6.1}s ({:+.1}%)",
                        p.at_s,
                        frac * 100.0,
                        p.predicted_time_to_oom_s,
                        (p.predicted_time_to_oom_s - actual) / actual * 100.0
                    );
                }
            }
        }
        _ => {
            eprintln!(
                "not OOM-killed: {} under {limit}, peak usage {}",
                r.scenario,
                human_bytes(r.peak_usage_bytes as f64)
            );
            if let Some(p) = r.predicted_time_to_oom_s {
                eprintln!("last prediction: kill at {p:.0}s");
            }
        }
    }
    for n in &r.notes {
        eprintln!("note: {n}");
    }
    eprintln!(
        "wrote {}/oom.json, samples.jsonl{}",
        out.display(),
        if r.plot.is_some() { ", oom.svg" } else { "" }
    );
}

/// Two panels: cgroup usage against the limit, and the predicted time of the
/// kill against when it was predicted, with the actual kill and a ±15% band.
pub fn plot(
    path: &Path,
    scenario: &str,
    limit: u64,
    samples: &[Sample],
    predictions: &[Prediction],
    actual: Option<f64>,
) -> Result<()> {
    let usage: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| Some((s.t, s.cgroup.as_ref()?.usage as f64 / MIB)))
        .collect();
    let t_max = actual
        .unwrap_or(0.0)
        .max(usage.last().map(|p| p.0).unwrap_or(1.0))
        .max(1.0);
    let root = SVGBackend::new(path, (900, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(340);
    usage_panel(&top, scenario, limit, &usage, actual, t_max)?;
    prediction_panel(&bottom, predictions, actual, t_max)?;
    root.present().map_err(err)?;
    Ok(())
}

/// The top panel: cgroup usage (MiB) against the limit, and the kill.
fn usage_panel(
    area: &Area,
    scenario: &str,
    limit: u64,
    usage: &[(f64, f64)],
    actual: Option<f64>,
    t_max: f64,
) -> Result<()> {
    let limit_mib = limit as f64 / MIB;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "cgroup memory: {scenario} under {}",
                human_bytes(limit as f64)
            ),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max * 1.05, 0.0..limit_mib * 1.1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the load started")
        .y_desc("MiB")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(usage.iter().copied(), BLUE))
        .map_err(err)?
        .label("usage")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE));
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, limit_mib), (t_max * 1.05, limit_mib)],
            RED.stroke_width(2),
        ))
        .map_err(err)?
        .label("limit")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED));
    if let Some(a) = actual {
        chart
            .draw_series(LineSeries::new(
                vec![(a, 0.0), (a, limit_mib * 1.1)],
                BLACK.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("killed at {a:.1}s"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;

    Ok(())
}

/// The bottom panel: the predicted time of the kill against when it was
/// predicted, with the actual kill and a ±15% band.
fn prediction_panel(
    area: &Area,
    predictions: &[Prediction],
    actual: Option<f64>,
    t_max: f64,
) -> Result<()> {
    let points: Vec<(f64, f64)> = predictions
        .iter()
        .map(|p| (p.at_s, p.predicted_time_to_oom_s))
        .collect();
    let y_max = points
        .iter()
        .map(|p| p.1)
        .fold(actual.unwrap_or(1.0) * 1.3, f64::max)
        .min(t_max * 4.0);
    let mut chart = ChartBuilder::on(area)
        .caption(
            "predicted time of the kill, as the run went",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max * 1.05, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("predicted at (s)")
        .y_desc("kill at (s)")
        .draw()
        .map_err(err)?;
    if let Some(a) = actual {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, a * 0.85), (t_max * 1.05, a * 1.15)],
                RGBColor(200, 230, 200).mix(0.6).filled(),
            )))
            .map_err(err)?
            .label("actual ±15%")
            .legend(|(x, y)| {
                Rectangle::new(
                    [(x, y - 5), (x + 15, y + 5)],
                    RGBColor(200, 230, 200).filled(),
                )
            });
        chart
            .draw_series(LineSeries::new(vec![(0.0, a), (t_max * 1.05, a)], BLACK))
            .map_err(err)?
            .label("actual")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK));
    }
    chart
        .draw_series(LineSeries::new(
            points.iter().copied().filter(|p| p.1 <= y_max),
            BLUE,
        ))
        .map_err(err)?
        .label("predicted")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    Ok(())
}
