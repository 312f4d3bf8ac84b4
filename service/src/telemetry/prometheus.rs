//! `GET /metrics`: the `/debug/memory` numbers in Prometheus text format (0.0.4).

use std::fmt::Write;

use super::memory::MemoryReport;

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// Renders the report; component gauges become one labelled family.
pub fn render(report: &MemoryReport, out: &mut String) {
    gauge(
        out,
        "leaklab_jemalloc_allocated_bytes",
        "Bytes in live allocations (jemalloc stats.allocated).",
        report.allocated,
    );
    gauge(
        out,
        "leaklab_jemalloc_active_bytes",
        "Bytes in active pages (jemalloc stats.active).",
        report.active,
    );
    gauge(
        out,
        "leaklab_jemalloc_resident_bytes",
        "Bytes in resident pages jemalloc maps (stats.resident).",
        report.resident,
    );
    gauge(
        out,
        "leaklab_jemalloc_mapped_bytes",
        "Bytes in extents jemalloc has mapped (stats.mapped).",
        report.mapped,
    );
    gauge(
        out,
        "leaklab_jemalloc_retained_bytes",
        "Virtual bytes jemalloc retains (stats.retained).",
        report.retained,
    );
    gauge(
        out,
        "leaklab_process_resident_memory_bytes",
        "Resident set size from /proc/self/statm.",
        report.rss,
    );
    gauge(
        out,
        "leaklab_process_open_fds",
        "Open file descriptors.",
        report.open_fds,
    );
    gauge(
        out,
        "leaklab_process_memory_maps",
        "Memory mappings in /proc/self/maps.",
        report.maps,
    );
    gauge(
        out,
        "leaklab_tokio_alive_tasks",
        "Alive tokio tasks.",
        report.alive_tasks,
    );
    if let Some(cg) = &report.cgroup {
        gauge(
            out,
            "leaklab_cgroup_memory_usage_bytes",
            "Memory cgroup usage.",
            cg.usage,
        );
        if let Some(limit) = cg.limit {
            gauge(
                out,
                "leaklab_cgroup_memory_limit_bytes",
                "Memory cgroup limit.",
                limit,
            );
        }
        if let Some(headroom) = cg.headroom {
            gauge(
                out,
                "leaklab_cgroup_memory_headroom_bytes",
                "Memory cgroup limit minus usage.",
                headroom,
            );
        }
        if let Some(kills) = cg.oom_kills {
            gauge(
                out,
                "leaklab_cgroup_oom_kills",
                "OOM kills in the memory cgroup.",
                kills,
            );
        }
    }
    let _ = writeln!(out, "# HELP leaklab_component Component gauges (see /debug/memory components).\n# TYPE leaklab_component gauge");
    for (name, value) in &report.components {
        let _ = writeln!(out, "leaklab_component{{gauge=\"{name}\"}} {value}");
    }
    let _ = writeln!(out, "# HELP leaklab_leak_retained_bytes Bytes a leaky path retains, by scenario.\n# TYPE leaklab_leak_retained_bytes gauge");
    for (id, state) in &report.budget {
        let _ = writeln!(
            out,
            "leaklab_leak_retained_bytes{{scenario=\"{id}\"}} {}",
            state.retained_bytes
        );
    }
    let _ = writeln!(
        out,
        "# HELP leaklab_leak_enabled Leak flags that are on.\n# TYPE leaklab_leak_enabled gauge"
    );
    for id in &report.leaks_on {
        let _ = writeln!(out, "leaklab_leak_enabled{{scenario=\"{id}\"}} 1");
    }
    let _ = writeln!(out, "# HELP leaklab_uptime_seconds Seconds since start.\n# TYPE leaklab_uptime_seconds gauge\nleaklab_uptime_seconds {:.3}", report.uptime_s);
}
