//! `loadgen hunt`'s report: `hunt.md` (the findings, their retention paths,
//! the proof after the fix) and `report.html` around it with the runs' plots.

use std::fmt::Write as _;
use std::path::Path;

use leaklab_model::hunt::HuntReport;
use leaklab_model::run::RunSummary;

use crate::human::human_bytes;

/// Bytes per second as a burn per hour, `6.9 GiB/h`.
pub fn per_hour(bytes_per_s: f64) -> String {
    crate::human::human_per_hour(bytes_per_s * 3600.0)
}

/// A time to OOM in minutes or hours.
pub fn duration_text(s: Option<f64>) -> String {
    match s {
        Some(s) if s.is_finite() && s < 3600.0 => format!("{:.0} min", s / 60.0),
        Some(s) if s.is_finite() => format!("{:.1} h", s / 3600.0),
        _ => "never (not rising)".into(),
    }
}

/// The slope of `signal` in a run, 0 when it has none.
pub fn slope(summary: &RunSummary, signal: &str) -> f64 {
    summary
        .signals
        .get(signal)
        .map(|f| f.slope_per_s)
        .unwrap_or(0.0)
}

/// The live heap, RSS and alive tasks from first to last sample of a run.
pub fn signals_line(run: &RunSummary) -> String {
    let f = |name: &str| {
        run.signals
            .get(name)
            .map_or((0.0, 0.0), |f| (f.first, f.last))
    };
    let (heap, rss, tasks) = (f("allocated"), f("rss"), f("alive_tasks"));
    format!(
        "live heap {} -> {}, RSS {} -> {}, alive tasks {:.0} -> {:.0}",
        human_bytes(heap.0),
        human_bytes(heap.1),
        human_bytes(rss.0),
        human_bytes(rss.1),
        tasks.0,
        tasks.1
    )
}

/// `hunt.md`: the findings, their retention paths, the proof after the fix.
pub fn markdown(report: &HuntReport, leaky: &RunSummary, fixed: &RunSummary, limit: u64) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# leaklab hunt: {}\n", title(report));
    let _ = writeln!(
        md,
        "Leaky run: {:.0} triggering requests/s for {:.0} s; live heap {} -> {}; burn {}; time to OOM against {}: {}.\n",
        leaky.load.rate_achieved,
        leaky.load.duration_s,
        human_bytes(leaky.signals.get("allocated").map(|f| f.first).unwrap_or(0.0)),
        human_bytes(leaky.signals.get("allocated").map(|f| f.last).unwrap_or(0.0)),
        per_hour(slope(leaky, "allocated")),
        human_bytes(limit as f64),
        duration_text(leaky.verdict.time_to_oom_s)
    );
    let _ = writeln!(
        md,
        "| leak | class | component | burn | why (signals) | artifact |\n|---|---|---|---|---|---|"
    );
    for f in &report.findings {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            f.scenario.as_deref().unwrap_or("?"),
            f.class,
            f.component.as_deref().unwrap_or("?"),
            f.burn_rate_bytes_per_h
                .map(|b| per_hour(b / 3600.0))
                .unwrap_or_else(|| "-".into()),
            f.why,
            f.artifact.as_deref().unwrap_or("-")
        );
    }
    if report.findings.iter().any(|f| !f.evidence.is_empty()) {
        let _ = writeln!(md, "\n## Evidence\n");
        for f in &report.findings {
            let _ = writeln!(
                md,
                "- **{}** (route: {})",
                f.scenario.as_deref().unwrap_or(f.class.as_str()),
                f.route.as_deref().unwrap_or("?")
            );
            for e in &f.evidence {
                let _ = writeln!(md, "  - {e}");
            }
        }
    }
    for note in &report.notes {
        let _ = writeln!(md, "\nNote: {note}");
    }
    let _ = writeln!(md, "\n## Retention paths\n");
    for f in &report.findings {
        let _ = writeln!(
            md,
            "- **{}**: {}",
            f.scenario.as_deref().unwrap_or(f.class.as_str()),
            f.path
        );
    }
    let _ = writeln!(
        md,
        "\n## After the fix\n\nSame load with the fixes on: {} (class {}), live heap {}, alive tasks {:+.2}/s, {:.0} requests/s.\n",
        if report.after_fix.leak { "still leaking" } else { "no leak" },
        report.after_fix.class,
        per_hour(report.after_fix.burn_rate_bytes_per_h / 3600.0),
        report.after_fix.alive_tasks_slope_per_s,
        fixed.load.rate_achieved
    );
    md
}

/// The hunt's title: the seeded pair, or "blind" and the mystery's seed.
fn title(report: &HuntReport) -> String {
    match (report.blind, report.mystery_seed) {
        (true, Some(seed)) => format!("blind, mystery seed {seed}"),
        (true, None) => "blind".to_owned(),
        _ => report.leaks.join(" + "),
    }
}

/// `report.html` in `out`, self-contained: the markdown as HTML (tables
/// as tables), each finding's artifact shown (the heap diff's top sites,
/// the task census's groups), and the runs' plots inline, so the page keeps
/// everything when copied on its own. Links to the raw files under `out`
/// (profiles, full run reports) are extras.
pub fn html(
    report: &HuntReport,
    leaky: &RunSummary,
    fixed: &RunSummary,
    limit: u64,
    out: &Path,
) -> String {
    let body = super::markdown_html(&markdown(report, leaky, fixed, limit));
    let (leaky_dir, fixed_dir) = if report.blind {
        let proof = if out.join("4-proof-2").exists() {
            "4-proof-2"
        } else {
            "4-proof-1"
        };
        ("1-screen", proof)
    } else {
        ("1-leaky", "2-fixed")
    };
    let mut artifacts = String::new();
    for f in &report.findings {
        let Some(file) = &f.artifact else { continue };
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let shown: Vec<&str> = text.lines().take(16).collect();
        artifacts.push_str(&format!(
            "<h3>{}: {}</h3><pre>{}</pre>",
            super::esc(f.scenario.as_deref().unwrap_or(f.class.as_str())),
            super::esc(&relative(file, out)),
            super::esc(&shown.join("\n"))
        ));
    }
    let plots = |dir: &str| {
        ["memory.svg", "tasks.svg"]
            .iter()
            .map(|p| super::inline_svg(&out.join(dir).join(p)))
            .collect::<String>()
    };
    format!(
        "<!doctype html><meta charset=\"utf-8\"><title>leaklab hunt: {title}</title>\
         <style>{style}</style>{body}\
         <h2>Artifacts</h2>{artifacts}\
         <h2>Leaky run</h2>{leaky_plots}\
         <h2>With the fixes</h2>{fixed_plots}",
        title = super::esc(&title(report)),
        style = super::STYLE,
        leaky_plots = plots(leaky_dir),
        fixed_plots = plots(fixed_dir),
    )
}

/// `file` relative to `out` when it is under it.
fn relative(file: &str, out: &Path) -> String {
    Path::new(file)
        .strip_prefix(out)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| file.to_owned())
}
