//! `loadgen canary`'s report: `canary.svg` (the baseline's and the canary's
//! heap and RSS, then alive tasks, the part left out of the comparison
//! shaded, a line at each toggle) and the side-by-side summary on stderr.

use std::path::Path;

use anyhow::Result;
use leaklab_model::canary::CanaryReport;
use leaklab_model::run::{Sample, Verdict};
use plotters::prelude::*;

use super::{err, points, Area, Line, SIZE};
use crate::human::{human_bytes, MIB};
use crate::judging::canary::fmt;

/// `canary.svg` for `loadgen canary`: the baseline's and the canary's heap and
/// RSS (top) and alive tasks (bottom) over the run, the part left out of the
/// comparison shaded, and a line at each toggle.
pub fn canary_plot(
    path: &Path,
    r: &CanaryReport,
    baseline: &[Sample],
    canary: &[Sample],
) -> Result<()> {
    let root = SVGBackend::new(path, (SIZE.0, 2 * SIZE.1)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(SIZE.1);
    let t_max = baseline
        .iter()
        .chain(canary)
        .map(|s| s.t)
        .fold(1.0, f64::max);
    let t_min = baseline
        .iter()
        .chain(canary)
        .map(|s| s.t)
        .fold(0.0, f64::min);
    let light = |c: RGBColor| RGBColor(c.0 / 2 + 127, c.1 / 2 + 127, c.2 / 2 + 127);
    let mem = |s: &Sample| s.memory.as_ref().map(|m| m.allocated as f64);
    let heap: Vec<Line> = vec![
        ("baseline allocated", BLUE, points(baseline, mem)),
        ("canary allocated", RED, points(canary, mem)),
        (
            "baseline rss",
            light(BLUE),
            points(baseline, |s| s.rss().map(|v| v as f64)),
        ),
        (
            "canary rss",
            light(RED),
            points(canary, |s| s.rss().map(|v| v as f64)),
        ),
    ];
    let task = |s: &Sample| s.memory.as_ref().map(|m| m.alive_tasks as f64 * MIB);
    let tasks: Vec<Line> = vec![
        ("baseline alive tasks", BLUE, points(baseline, task)),
        ("canary alive tasks", RED, points(canary, task)),
    ];
    let title = format!(
        "canary vs baseline: {} ({})",
        r.scenario,
        if r.verdict.regression {
            format!("canary regresses: {}", r.verdict.class)
        } else {
            "no regression".to_string()
        }
    );
    for (area, lines, y_desc, caption) in [
        (&top, &heap, "MiB", title),
        (&bottom, &tasks, "tasks", "alive tokio tasks".to_string()),
    ] {
        panel(area, r, lines, y_desc, caption, (t_min, t_max))?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// One panel: `lines` over the run, the part left out of the comparison
/// shaded, a line at each toggle applied.
fn panel(
    area: &Area,
    r: &CanaryReport,
    lines: &[Line],
    y_desc: &str,
    caption: String,
    (t_min, t_max): (f64, f64),
) -> Result<()> {
    let y_max = lines
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.05;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(t_min..t_max, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (r.window_s[0], y_max)],
            RGBColor(220, 220, 220).mix(0.5).filled(),
        )))
        .map_err(err)?
        .label("not compared (warm-up, settling)")
        .legend(|(x, y)| {
            Rectangle::new(
                [(x, y - 5), (x + 15, y + 5)],
                RGBColor(200, 200, 200).filled(),
            )
        });
    for (name, color, pts) in lines.iter() {
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color))
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
    }
    for t in r.toggles.iter() {
        let Some(at) = t.applied_at_s else { continue };
        chart
            .draw_series(LineSeries::new(
                vec![(at, 0.0), (at, y_max)],
                BLACK.stroke_width(1),
            ))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!(
                    "{} {}",
                    t.toggle.id,
                    if t.toggle.enabled { "on" } else { "off" }
                ),
                (at, y_max * 0.97),
                ("sans-serif", 13),
            )))
            .map_err(err)?;
    }
    // --until-verdict: where the pair was decided (the runs stopped there).
    if let Some(q) = r.sequential.as_ref().filter(|q| q.decision.is_some()) {
        let at = q.decided_at_s;
        chart
            .draw_series(LineSeries::new(
                vec![(at, 0.0), (at, y_max)],
                RED.stroke_width(1),
            ))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                "decided",
                (at, y_max * 0.90),
                ("sans-serif", 13).into_font().color(&RED),
            )))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

pub fn print_human(r: &CanaryReport) {
    eprintln!();
    eprintln!(
        "compared over {:.0}–{:.0} s (Theil–Sen slope per second [95% CI]):",
        r.window_s[0], r.window_s[1]
    );
    eprintln!("  {:<22} {:>28} {:>28}", "signal", "baseline", "canary");
    for c in &r.compared {
        let bytes = c.signal != "alive_tasks";
        eprintln!(
            "  {:<22} {:>28} {:>28}{}",
            c.signal,
            format!(
                "{} [{}, {}]",
                fmt(bytes, c.baseline_slope_per_s),
                fmt(bytes, c.baseline_ci95[0]),
                fmt(bytes, c.baseline_ci95[1])
            ),
            format!(
                "{} [{}, {}]",
                fmt(bytes, c.canary_slope_per_s),
                fmt(bytes, c.canary_ci95[0]),
                fmt(bytes, c.canary_ci95[1])
            ),
            if c.canary_above { "  CANARY ABOVE" } else { "" }
        );
    }
    eprintln!(
        "baseline: {}; canary: {}",
        side_line(&r.baseline.verdict),
        side_line(&r.canary.verdict)
    );
    let v = &r.verdict;
    if v.regression {
        eprintln!(
            "verdict: REGRESSION: the canary leaks ({}{}){}",
            v.class,
            v.component
                .as_ref()
                .map(|c| format!(" in {c}"))
                .unwrap_or_default(),
            v.burn_rate_delta_bytes_per_h
                .map(|b| format!(", {}/h more than the baseline", human_bytes(b)))
                .unwrap_or_default()
        );
    } else {
        eprintln!("verdict: no regression in the canary");
    }
    for reason in &v.reasons {
        eprintln!("  because {reason}");
    }
    if let Some(q) = &r.sequential {
        match q.decision.as_deref() {
            Some(d) => eprintln!(
                "until-verdict: {d}, decided at {:.1} s{} ({} looks; at most {:.0} s)",
                q.decided_at_s,
                q.after_toggle_s
                    .map(|a| format!(", {a:.1} s after the toggle"))
                    .unwrap_or_default(),
                q.looks,
                q.max_duration_s
            ),
            None => eprintln!(
                "until-verdict: not decided before the maximum ({:.0} s); the fixed window decided",
                q.max_duration_s
            ),
        }
    }
    for n in &r.notes {
        eprintln!("note: {n}");
    }
    if let Some(p) = &r.plot {
        eprintln!("plot: {p}");
    }
}

fn side_line(v: &Verdict) -> String {
    if v.leak {
        format!("LEAK ({})", v.class)
    } else {
        format!("no leak ({})", v.class)
    }
}
