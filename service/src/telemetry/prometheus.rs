//! `GET /metrics`: the `/debug/memory` numbers in Prometheus text format
//! (0.0.4), named by Prometheus conventions so stock dashboards find them:
//!
//! - the standard process families: `process_resident_memory_bytes`,
//!   `process_open_fds`, `process_start_time_seconds`;
//! - allocator and runtime numbers under `leaklab_`, with unit suffixes
//!   (`leaklab_jemalloc_allocated_bytes`, `leaklab_tokio_alive_tasks`);
//! - one family per component number: `leaklab_<name>` for a gauge,
//!   `leaklab_<name>_total` for a counter, each with a HELP line saying what
//!   it counts and what holds it;
//! - every leak flag as 0 or 1 (`leaklab_leak_enabled{scenario}`), and what
//!   each leaky path has retained (`leaklab_leak_retained_bytes{scenario}`).

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::memory::MemoryReport;
use crate::catalogue::ScenarioId;
use crate::components::GaugeKind;

/// Writes one unlabelled family.
fn family(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    family(out, name, "gauge", help, value);
}

/// The process's start, in seconds since the Unix epoch.
fn start_time_seconds(uptime_s: f64) -> f64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    (now.as_secs_f64() - uptime_s).max(0.0)
}

/// Renders the report.
pub fn render(report: &MemoryReport, out: &mut String) {
    process(report, out);
    allocator(report, out);
    cgroup(report, out);
    components(report, out);
    leaks(report, out);
}

fn process(report: &MemoryReport, out: &mut String) {
    gauge(
        out,
        "process_resident_memory_bytes",
        "Resident memory size in bytes (/proc/self/statm).",
        report.rss,
    );
    gauge(
        out,
        "process_open_fds",
        "Number of open file descriptors.",
        report.open_fds,
    );
    family(
        out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        format!("{:.3}", start_time_seconds(report.uptime_s)),
    );
    gauge(
        out,
        "leaklab_process_memory_maps",
        "Memory mappings in /proc/self/maps (anonymous maps outside the allocator add to it).",
        report.maps,
    );
    gauge(
        out,
        "leaklab_tokio_alive_tasks",
        "Alive tokio tasks; each holds what its future captured until it ends.",
        report.alive_tasks,
    );
}

fn allocator(report: &MemoryReport, out: &mut String) {
    for (name, help, value) in [
        (
            "leaklab_jemalloc_allocated_bytes",
            "Bytes in live allocations (jemalloc stats.allocated): what the program holds.",
            report.allocated,
        ),
        (
            "leaklab_jemalloc_active_bytes",
            "Bytes in active pages (jemalloc stats.active).",
            report.active,
        ),
        (
            "leaklab_jemalloc_resident_bytes",
            "Bytes in resident pages jemalloc maps (stats.resident), freed pages not yet returned included.",
            report.resident,
        ),
        (
            "leaklab_jemalloc_mapped_bytes",
            "Bytes in extents jemalloc has mapped (stats.mapped).",
            report.mapped,
        ),
        (
            "leaklab_jemalloc_retained_bytes",
            "Virtual bytes jemalloc retains for reuse without holding them resident (stats.retained).",
            report.retained,
        ),
    ] {
        gauge(out, name, help, value);
    }
}

fn cgroup(report: &MemoryReport, out: &mut String) {
    let Some(cg) = &report.cgroup else { return };
    gauge(
        out,
        "leaklab_cgroup_memory_usage_bytes",
        "Memory the process's cgroup is charged for.",
        cg.usage,
    );
    if let Some(limit) = cg.limit {
        gauge(
            out,
            "leaklab_cgroup_memory_limit_bytes",
            "The cgroup's memory limit: the OOM killer acts at it.",
            limit,
        );
    }
    if let Some(headroom) = cg.headroom {
        gauge(
            out,
            "leaklab_cgroup_memory_headroom_bytes",
            "The cgroup's memory limit minus its usage.",
            headroom,
        );
    }
    if let Some(kills) = cg.oom_kills {
        family(
            out,
            "leaklab_cgroup_oom_kills_total",
            "counter",
            "Processes the OOM killer ended in the cgroup.",
            kills,
        );
    }
}

/// One family per component number.
fn components(report: &MemoryReport, out: &mut String) {
    for (name, value, meta) in report.components.iter() {
        match meta.kind {
            GaugeKind::Gauge => gauge(out, &format!("leaklab_{name}"), meta.help, value),
            GaugeKind::Counter => {
                let family_name = if name.ends_with("_total") {
                    format!("leaklab_{name}")
                } else {
                    format!("leaklab_{name}_total")
                };
                family(out, &family_name, "counter", meta.help, value);
            }
        }
    }
}

/// The leak flags (every one, 0 or 1) and what each leaky path retained.
/// Left out in mystery mode: they would give the answer away.
fn leaks(report: &MemoryReport, out: &mut String) {
    let Some(on) = report.leaks_on.as_deref() else {
        return;
    };
    let _ = writeln!(out, "# HELP leaklab_leak_retained_bytes Bytes a scenario's leaky path has retained and not released (its leak budget's use).\n# TYPE leaklab_leak_retained_bytes gauge");
    for (id, state) in report.budget.iter().flatten() {
        let _ = writeln!(
            out,
            "leaklab_leak_retained_bytes{{scenario=\"{id}\"}} {}",
            state.retained_bytes
        );
    }
    let _ = writeln!(out, "# HELP leaklab_leak_enabled 1 when a scenario's leaky path is switched on, 0 when its fixed path runs.\n# TYPE leaklab_leak_enabled gauge");
    for id in ScenarioId::ALL {
        let enabled = on.contains(&id.as_str());
        let _ = writeln!(
            out,
            "leaklab_leak_enabled{{scenario=\"{id}\"}} {}",
            u8::from(enabled)
        );
    }
}
