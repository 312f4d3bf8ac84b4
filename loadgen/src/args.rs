//! Command-line values every command parses the same way: `--rate`
//! ([`RateArg`]), durations (`30s`, `500ms`) and byte sizes (`1GiB`).

use std::time::Duration;

/// `--rate`: a number, `auto` or `max`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RateArg {
    Auto,
    Max,
    Fixed(f64),
}

/// Parses `--rate`.
pub fn parse_rate(s: &str) -> Result<RateArg, String> {
    match s {
        "auto" => Ok(RateArg::Auto),
        "max" => Ok(RateArg::Max),
        _ => match s.parse::<f64>() {
            Ok(r) if r > 0.0 && r.is_finite() => Ok(RateArg::Fixed(r)),
            _ => Err(format!(
                "{s:?}: expected a positive number, `auto` or `max`"
            )),
        },
    }
}

/// Parses `500ms`, `30s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected e.g. 30s, 500ms, 2m"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        u => return Err(format!("{s:?}: unknown unit {u:?} (ms, s, m, h)")),
    };
    if !(0.0..=30.0 * 86400.0).contains(&secs) {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `1GiB`, `512MiB`, `1000000` (bytes).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_bytes_and_rates_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("3 weeks").is_err());
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert_eq!(parse_rate("max"), Ok(RateArg::Max));
        assert_eq!(parse_rate("250"), Ok(RateArg::Fixed(250.0)));
        assert!(parse_rate("-1").is_err());
    }
}
