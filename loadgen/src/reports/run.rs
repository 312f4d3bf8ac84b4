//! `loadgen run`'s report: `memory.svg` (allocated, resident and RSS over
//! time, warm-up shaded, the fitted slope, the limit and projected OOM when
//! known), `tasks.svg`, `latency.svg` (completed per second and latency
//! percentiles), `report.html` showing them with the verdict, and the
//! summary printed on stderr.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use leaklab_model::run::{RunSummary, Sample, SignalFit};
use plotters::prelude::*;

use super::{err, esc, points, Chart, Line, SIZE};
use crate::engine::LoadStats;
use crate::human::{human_bytes, human_secs, human_value, MIB};

/// Writes the plots and `report.html` into `dir`; returns the HTML's path.
pub fn write(
    dir: &Path,
    summary: &RunSummary,
    samples: &[Sample],
    stats: &LoadStats,
) -> Result<PathBuf> {
    memory_plot(&dir.join("memory.svg"), summary, samples).context("memory.svg")?;
    tasks_plot(&dir.join("tasks.svg"), summary, samples).context("tasks.svg")?;
    latency_plot(&dir.join("latency.svg"), summary, stats).context("latency.svg")?;
    let path = dir.join("report.html");
    std::fs::write(&path, html(summary, dir))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The y range's top for data up to `y_max` with a legend of `entries`
/// lines in the upper left: the legend gets the room above the data, so it
/// covers none of it (the legend's height is about 16 px a line plus 16 px
/// of frame, the plotting area about 300 px high).
fn legend_top(y_max: f64, entries: usize) -> f64 {
    let share = ((entries as f64 * 16.0 + 16.0) / 300.0).min(0.6);
    y_max / (1.0 - share)
}

fn memory_plot(path: &Path, s: &RunSummary, samples: &[Sample]) -> Result<()> {
    let series: Vec<Line> = vec![
        (
            "allocated",
            BLUE,
            points(samples, |x| x.memory.as_ref().map(|m| m.allocated as f64)),
        ),
        (
            "resident",
            GREEN,
            points(samples, |x| x.memory.as_ref().map(|m| m.resident as f64)),
        ),
        ("rss", RED, points(samples, |x| x.rss().map(|v| v as f64))),
    ];
    let t_max = samples.last().map(|x| x.t).unwrap_or(1.0).max(1.0);
    let t_min = samples.first().map(|x| x.t).unwrap_or(0.0).min(0.0);
    let mut y_max = series
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let limit = s.verdict.limit_bytes.map(|l| l as f64 / MIB);
    // Show the limit only when it is within reach of the plot's scale.
    let show_limit = limit.filter(|l| *l <= 4.0 * y_max);
    if let Some(l) = show_limit {
        y_max = y_max.max(l);
    }
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    // A limit too far above the data to draw is said in the caption, where
    // nothing covers it.
    let off_scale = match (limit, show_limit, s.verdict.time_to_oom_s) {
        (Some(l), None, Some(t)) => format!(
            "; limit {} off scale, projected OOM in {t:.0} s",
            human_bytes(l * MIB)
        ),
        _ => String::new(),
    };
    let title = format!(
        "memory: {} ({}){off_scale}",
        s.scenario.as_deref().unwrap_or("-"),
        s.verdict.class
    );
    // Room above the data (the limit line included) for the legend: warm-up,
    // the three lines, and the fit, limit and death entries when drawn.
    let entries = 4
        + usize::from(!s.verdict.findings.is_empty() || s.signals.contains_key("allocated"))
        + usize::from(show_limit.is_some())
        + usize::from(s.target_died.is_some());
    let top = legend_top(y_max, entries);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(t_min..t_max, 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("MiB")
        .draw()
        .map_err(err)?;
    let warm = s.load.warmup_s;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (warm, top)],
            RGBColor(220, 220, 220).mix(0.5).filled(),
        )))
        .map_err(err)?
        .label("warm-up")
        .legend(|(x, y)| {
            Rectangle::new(
                [(x, y - 5), (x + 15, y + 5)],
                RGBColor(200, 200, 200).filled(),
            )
        });
    for (name, color, pts) in &series {
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color))
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
    }
    fit_line(&mut chart, s, &series)?;
    limit_line(&mut chart, s, show_limit, (t_min, t_max))?;
    if let Some(d) = &s.target_died {
        chart
            .draw_series(LineSeries::new(
                vec![(d.at_s, 0.0), (d.at_s, y_max)],
                RED.stroke_width(3),
            ))
            .map_err(err)?
            .label(format!("target died: {}", d.reason))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// The fitted line of the verdict's bytes signal over the window, anchored
/// at the window's median point.
fn fit_line(chart: &mut Chart, s: &RunSummary, series: &[Line]) -> Result<()> {
    let warm = s.load.warmup_s;
    let signal = s
        .verdict
        .findings
        .first()
        .map(|f| {
            if f.signal == "alive_tasks" {
                "allocated"
            } else {
                f.signal.as_str()
            }
        })
        .unwrap_or("allocated");
    if let (Some(fit), Some(pts)) = (s.signals.get(signal), series.iter().find(|x| x.0 == signal)) {
        let win: Vec<&(f64, f64)> = pts.2.iter().filter(|p| p.0 >= warm).collect();
        if let (Some(a), Some(b)) = (win.first(), win.last()) {
            // Anchor the Theil–Sen slope at the window's median point.
            let mid = win[win.len() / 2];
            let at = |t: f64| mid.1 + fit.slope_per_s / MIB * (t - mid.0);
            chart
                .draw_series(LineSeries::new(
                    vec![(a.0, at(a.0)), (b.0, at(b.0))],
                    BLACK.stroke_width(2),
                ))
                .map_err(err)?
                .label(format!(
                    "fit {}: {}/s",
                    signal,
                    human_bytes(fit.slope_per_s)
                ))
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 15, y)], BLACK.stroke_width(2))
                });
        }
    }
    Ok(())
}

/// The memory limit as a line (with the projected OOM) when it is on the
/// plot's scale; `memory_plot`'s caption says it otherwise.
fn limit_line(
    chart: &mut Chart,
    s: &RunSummary,
    show_limit: Option<f64>,
    (t_min, t_max): (f64, f64),
) -> Result<()> {
    if let Some(l) = show_limit {
        let label = match s.verdict.time_to_oom_s {
            Some(t) => format!(
                "limit {} (projected OOM in {:.0} s)",
                human_bytes(l * MIB),
                t
            ),
            None => format!("limit {}", human_bytes(l * MIB)),
        };
        chart
            .draw_series(LineSeries::new(
                vec![(t_min, l), (t_max, l)],
                MAGENTA.stroke_width(2),
            ))
            .map_err(err)?
            .label(label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], MAGENTA));
    }
    Ok(())
}

fn tasks_plot(path: &Path, s: &RunSummary, samples: &[Sample]) -> Result<()> {
    let pts: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|x| Some((x.t, x.memory.as_ref()?.alive_tasks as f64)))
        .collect();
    let t_max = pts.last().map(|p| p.0).unwrap_or(1.0).max(1.0);
    let t_min = pts.first().map(|p| p.0).unwrap_or(0.0).min(0.0);
    let y_max = pts.iter().map(|p| p.1).fold(1.0, f64::max) * 1.05;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("alive tokio tasks", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(t_min..t_max, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (s.load.warmup_s, y_max)],
            RGBColor(220, 220, 220).mix(0.5).filled(),
        )))
        .map_err(err)?;
    chart.draw_series(LineSeries::new(pts, BLUE)).map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn latency_plot(path: &Path, s: &RunSummary, stats: &LoadStats) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
    let per_s: Vec<(f64, f64)> = stats
        .per_second
        .iter()
        .enumerate()
        .map(|(i, b)| (i as f64, b.completed as f64))
        .collect();
    let y_max = per_s.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let x_max = (per_s.len() as f64).max(1.0);
    let mut c = ChartBuilder::on(&left)
        .caption("completed per second", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(err)?;
    c.configure_mesh().x_desc("seconds").draw().map_err(err)?;
    c.draw_series(LineSeries::new(per_s, BLUE)).map_err(err)?;
    let l = &s.load.latency_ms;
    let pcts = [
        ("p50", l.p50),
        ("p90", l.p90),
        ("p99", l.p99),
        ("p99.9", l.p999),
        ("max", l.max),
    ];
    let lat_max = pcts.iter().map(|p| p.1).fold(0.001, f64::max) * 1.1;
    let mut c = ChartBuilder::on(&right)
        .caption("latency (ms, from planned send time)", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..5.0, 0.0..lat_max)
        .map_err(err)?;
    c.configure_mesh()
        .x_labels(5)
        .x_label_formatter(&|x| {
            pcts.get(*x as usize)
                .map(|p| p.0.to_string())
                .unwrap_or_default()
        })
        .draw()
        .map_err(err)?;
    c.draw_series(pcts.iter().enumerate().map(|(i, p)| {
        Rectangle::new(
            [(i as f64 + 0.15, 0.0), (i as f64 + 0.85, p.1)],
            BLUE.mix(0.6).filled(),
        )
    }))
    .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn html(s: &RunSummary, dir: &Path) -> String {
    let mut h = String::new();
    let v = &s.verdict;
    let _ = write!(
        h,
        "<!doctype html><meta charset=utf-8><title>loadgen: {sc}</title>\
         <style>{style}</style>\
         <h1>loadgen run: {sc}</h1><p>target {t}{pid}</p>\
         <h2 class={cls}>verdict: {head} — {class}</h2><ul>",
        sc = esc(s.scenario.as_deref().unwrap_or("-")),
        t = esc(&s.target),
        pid = s.pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        cls = if v.leak { "leak" } else { "ok" },
        head = if v.leak { "LEAK" } else { "no leak" },
        class = esc(v.class.as_str()),
        style = super::STYLE,
    );
    for f in &v.findings {
        let _ = write!(
            h,
            "<li>{} in <b>{}</b> (gauge {}): {} {}/s{}</li>",
            esc(f.class.as_str()),
            esc(f.component.as_deref().unwrap_or("?")),
            esc(f.gauge.as_deref().unwrap_or("?")),
            esc(&f.signal),
            signed(&f.signal, f.slope_per_s),
            f.burn_rate_bytes_per_h
                .map(|b| format!(", burn rate {}/h", human_bytes(b)))
                .unwrap_or_default()
        );
    }
    for r in &v.reasons {
        let _ = write!(h, "<li>{}</li>", esc(r));
    }
    if let Some(t) = v.time_to_oom_s {
        let _ = write!(
            h,
            "<li>time to OOM: {t:.0} s against {}</li>",
            v.limit_bytes
                .map(|l| human_bytes(l as f64))
                .unwrap_or_default()
        );
    }
    if let Some(d) = &s.target_died {
        let _ = write!(
            h,
            "<li class=leak>target died at {:.1} s: {}</li>",
            d.at_s,
            esc(&d.reason)
        );
    }
    h.push_str("</ul>");
    if let Some(g) = &s.ground_truth {
        let _ = write!(
            h,
            "<p>ground truth ({}): expected {}/s, measured {}/s, error {:+.1}%</p>",
            esc(&g.signal),
            human_value(&g.signal, g.expected_slope_per_s),
            human_value(&g.signal, g.measured_slope_per_s),
            g.error_pct
        );
    }
    // Inline, so the page carries its plots when copied on its own.
    for plot in ["memory.svg", "tasks.svg", "latency.svg"] {
        h.push_str(&super::inline_svg(&dir.join(plot)));
    }
    h.push_str("<h2>signals after warm-up</h2><table><tr><th>signal<th>slope/s<th>95% CI<th>p<th>first<th>last<th>rising");
    for (name, f) in &s.signals {
        let _ = write!(
            h,
            "<tr><td>{}<td>{}<td>[{}, {}]<td>{:.1e}<td>{}<td>{}<td>{}",
            esc(name),
            human_value(name, f.slope_per_s),
            human_value(name, f.ci95[0]),
            human_value(name, f.ci95[1]),
            f.p_value,
            human_value(name, f.first),
            human_value(name, f.last),
            if f.rising { "yes" } else { "" }
        );
    }
    let l = &s.load;
    let _ = write!(
        h,
        "</table><h2>load</h2><p>{} requests, {:.1}/s achieved, {} errors, {} dropped; latency ms p50 {:.2} p99 {:.2} max {:.2}</p>",
        l.requests, l.rate_achieved, l.errors, l.dropped, l.latency_ms.p50, l.latency_ms.p99, l.latency_ms.max
    );
    for n in &s.notes {
        let _ = write!(h, "<p>note: {}</p>", esc(n));
    }
    h
}

/// The human summary (stderr).
pub fn print_human(s: &RunSummary) {
    let l = &s.load;
    eprintln!();
    eprintln!(
        "loadgen: {} against {}{}",
        s.scenario.as_deref().unwrap_or("-"),
        s.target,
        s.pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    );
    eprintln!(
        "load: {} target, {:.1}/s achieved after warm-up; {} requests, {} errors, {} dropped; latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        l.rate_target.map(|r| format!("{r:.0}/s")).unwrap_or_else(|| "max".into()),
        l.rate_achieved,
        l.requests,
        l.errors,
        l.dropped,
        l.latency_ms.p50,
        l.latency_ms.p90,
        l.latency_ms.p99,
        l.latency_ms.p999,
        l.latency_ms.max
    );
    eprintln!(
        "signals after {:.0} s warm-up (Theil–Sen slope [95% CI], Mann–Kendall p, first → last):",
        l.warmup_s
    );
    for name in [
        "allocated",
        "resident",
        "rss",
        "rss_outside_allocator",
        "alive_tasks",
        "open_fds",
        "maps",
    ] {
        if let Some(f) = s.signals.get(name) {
            print_signal(name, f);
        }
    }
    for (name, f) in s
        .signals
        .iter()
        .filter(|(n, f)| n.starts_with("components.") && f.slope_per_s != 0.0)
    {
        print_signal(name, f);
    }
    let v = &s.verdict;
    let head = if v.leak { "LEAK" } else { "no leak" };
    eprintln!("verdict: {head}: {}", v.class);
    for f in &v.findings {
        eprintln!(
            "  {} in {} (gauge {}), signal {} {}/s{}",
            f.class,
            f.component.as_deref().unwrap_or("?"),
            f.gauge.as_deref().unwrap_or("?"),
            f.signal,
            signed(&f.signal, f.slope_per_s),
            f.burn_rate_bytes_per_h
                .map(|b| format!(", burn rate {}/h", human_bytes(b)))
                .unwrap_or_default()
        );
    }
    for r in &v.reasons {
        eprintln!("  because {r}");
    }
    if let (Some(t), Some(limit)) = (v.time_to_oom_s, v.limit_bytes) {
        let [lo, hi] = v.time_to_oom_interval_s.unwrap_or([None, None]);
        eprintln!(
            "  time to OOM against {}: {} [{} – {}]",
            human_bytes(limit as f64),
            human_secs(Some(t)),
            human_secs(lo),
            human_secs(hi)
        );
    }
    if let Some(g) = &s.ground_truth {
        eprintln!(
            "ground truth: {} expected {}/s ({} per request × {:.1}/s), measured {}/s: error {:+.1}%",
            g.signal,
            human_value(&g.signal, g.expected_slope_per_s),
            human_value(&g.signal, g.per_request),
            g.rate_achieved,
            human_value(&g.signal, g.measured_slope_per_s),
            g.error_pct
        );
    }
    if let Some(q) = &s.sequential {
        eprintln!(
            "until-verdict: decided by the {} test{} {:.1} s after warm-up ({} looks; at most {:.0} s)",
            q.decided_by,
            q.decision
                .as_deref()
                .map(|d| format!(" ({d}{})", q.signal.as_deref().map(|s| format!(" in {s}")).unwrap_or_default()))
                .unwrap_or_default(),
            q.decision_after_s,
            q.looks,
            q.max_duration_s
        );
    }
    if let Some(d) = &s.target_died {
        eprintln!("TARGET DIED at {:.1} s: {}", d.at_s, d.reason);
    }
    for n in &s.notes {
        eprintln!("note: {n}");
    }
    if let Some(r) = &s.report {
        eprintln!("report: {r}");
    }
}

fn print_signal(name: &str, f: &SignalFit) {
    let bytes =
        !name.starts_with("components.") && !matches!(name, "alive_tasks" | "open_fds" | "maps");
    let v = |x: f64| {
        if bytes {
            human_bytes(x)
        } else {
            format!("{x:.0}")
        }
    };
    eprintln!(
        "  {name:<34} {:>12}/s [{}, {}] p={:.1e}  {} → {}{}",
        v(f.slope_per_s),
        v(f.ci95[0]),
        v(f.ci95[1]),
        f.p_value,
        v(f.first),
        v(f.last),
        if f.rising { "  RISING" } else { "" }
    );
}

/// A signed rate of signal `name` for people: `+1.9 MiB`, `+200.40`.
fn signed(name: &str, v: f64) -> String {
    let text = human_value(name, v);
    if v >= 0.0 {
        format!("+{text}")
    } else {
        text
    }
}
