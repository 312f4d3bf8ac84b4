//! Numbers for people: byte counts and rates (`12.3 MiB`), durations.

/// One mebibyte, as a float.
pub const MIB: f64 = 1024.0 * 1024.0;

/// `12.3 MiB`-style text for a byte count or rate.
pub fn human_bytes(b: f64) -> String {
    let a = b.abs();
    let (v, unit) = if a >= 1024.0 * MIB {
        (b / (1024.0 * MIB), "GiB")
    } else if a >= MIB {
        (b / MIB, "MiB")
    } else if a >= 1024.0 {
        (b / 1024.0, "KiB")
    } else {
        (b, "B")
    };
    format!("{v:.1} {unit}")
}

/// Whether a signal of a run (`allocated`, `rss`, `components.pool_capacity_bytes`,
/// ...) is in bytes rather than a count.
pub fn is_bytes_signal(name: &str) -> bool {
    let g = name.strip_prefix("components.").unwrap_or(name);
    matches!(
        g,
        "allocated"
            | "active"
            | "resident"
            | "mapped"
            | "retained"
            | "rss"
            | "rss_outside_allocator"
            | "allocator_unused"
    ) || g.ends_with("_bytes")
        || g.ends_with("_bytes_total")
}

/// A value of signal `name` for people: bytes as [`human_bytes`], counts
/// with two decimals.
pub fn human_value(name: &str, v: f64) -> String {
    if is_bytes_signal(name) {
        human_bytes(v)
    } else {
        format!("{v:.2}")
    }
}

/// Bytes per hour for people: `6.9 GiB/h`.
pub fn human_per_hour(bytes_per_h: f64) -> String {
    format!("{}/h", human_bytes(bytes_per_h))
}

/// `42 s`, `3.5 min`, `2.0 h`; `∞` for none.
pub fn human_secs(s: Option<f64>) -> String {
    match s {
        None => "∞".into(),
        Some(s) if s < 120.0 => format!("{s:.0} s"),
        Some(s) if s < 7200.0 => format!("{:.1} min", s / 60.0),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}
