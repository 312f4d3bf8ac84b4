//! `loadgen hunt`'s report: `hunt.md` (the findings, their retention paths,
//! the proof after the fix) and `report.html` around it with the runs' plots.

use std::fmt::Write as _;
use std::path::Path;

use leaklab_model::hunt::HuntReport;
use leaklab_model::run::RunSummary;

use crate::human::human_bytes;

/// Bytes per second as `MB/h`.
pub fn mb_per_h(bytes_per_s: f64) -> String {
    format!("{:.1} MB/h", bytes_per_s * 3600.0 / 1e6)
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
        mb_per_h(slope(leaky, "allocated")),
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
                .map(|b| mb_per_h(b / 3600.0))
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
        mb_per_h(report.after_fix.burn_rate_bytes_per_h / 3600.0),
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

/// `report.html` in `out`: the markdown, the runs' plots, the heap profile
/// when one was taken.
pub fn html(
    report: &HuntReport,
    leaky: &RunSummary,
    fixed: &RunSummary,
    limit: u64,
    out: &Path,
) -> String {
    let md = markdown(report, leaky, fixed, limit);
    let escaped = md
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
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
    let flame = if out.join("heap-end.svg").exists() {
        "<h2>Heap profile (in-use, end of the leaky run)</h2><p><a href=\"heap-end.svg\">flamegraph</a> · <a href=\"heap-end.pb.gz\">pprof</a> · <a href=\"heap-diff.txt\">diff</a></p>"
    } else {
        ""
    };
    format!(
        "<!doctype html><meta charset=\"utf-8\"><title>leaklab hunt</title>\
         <style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}pre{{white-space:pre-wrap;background:#f6f6f6;padding:1em}}img{{max-width:100%}}</style>\
         <h1>leaklab hunt: {}</h1><pre>{escaped}</pre>\
         <h2>Leaky run</h2><img src=\"{leaky_dir}/memory.svg\"><img src=\"{leaky_dir}/tasks.svg\"><p><a href=\"{leaky_dir}/report.html\">full report</a></p>\
         {flame}\
         <h2>With the fixes</h2><img src=\"{fixed_dir}/memory.svg\"><img src=\"{fixed_dir}/tasks.svg\"><p><a href=\"{fixed_dir}/report.html\">full report</a></p>",
        title(report)
    )
}
