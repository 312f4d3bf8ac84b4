//! A target's Prometheus exposition (`--metrics URL`, `--metric NAME`):
//! for services that know nothing of leaklab, the series loadgen samples
//! beside `/proc`. Values are summed over each series' label sets.
//!
//! The URL is checked before the load starts: it must answer Prometheus
//! text (not an HTML page), and every series named with `--metric` must be
//! in it; otherwise a usage error (exit 2) says what it found.

use std::collections::BTreeMap;

use anyhow::Result;
use prometheus_parse::{Scrape, Value};

use super::{AccessOpts, Control};
use crate::errors::UsageError;

/// The standard series of a process's resident memory.
pub const RESIDENT: &str = "process_resident_memory_bytes";

/// Where to scrape and which series to keep.
#[derive(Clone)]
pub struct MetricsSource {
    control: Control,
    path: String,
    /// The URL as given, for messages.
    pub url: String,
    /// Series kept in every sample: those asked for, plus the resident
    /// memory when the exposition has it.
    pub names: Vec<String>,
}

/// Every series of a Prometheus text body, values summed over label sets
/// (histogram and summary series are left out).
pub fn parse(body: &str) -> Result<BTreeMap<String, f64>> {
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))?;
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for s in scrape.samples {
        let v = match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            Value::Histogram(_) | Value::Summary(_) => continue,
        };
        *out.entry(s.metric).or_default() += v;
    }
    Ok(out)
}

impl MetricsSource {
    /// Checks `url` (its host obeys the loopback rule) and the names asked
    /// for, from one scrape.
    pub async fn open(url: &str, access: &AccessOpts, names: &[String]) -> Result<MetricsSource> {
        let (base, path) = split_url(url)?;
        let control = Control::new(&access.target(&base)?);
        let body = control
            .get_text(&path)
            .await
            .map_err(|e| UsageError(format!("--metrics {url}: {e}")))?;
        let series = check_body(url, &body)?;
        let missing: Vec<&String> = names.iter().filter(|n| !series.contains_key(*n)).collect();
        if !missing.is_empty() {
            let some: Vec<&str> = series.keys().take(12).map(String::as_str).collect();
            return Err(UsageError(format!(
                "{url} has no series named {} (it has {} series: {}{})",
                missing
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                series.len(),
                some.join(", "),
                if series.len() > some.len() {
                    ", ..."
                } else {
                    ""
                }
            ))
            .into());
        }
        let mut keep = names.to_vec();
        if series.contains_key(RESIDENT) && !keep.iter().any(|n| n == RESIDENT) {
            keep.push(RESIDENT.to_owned());
        }
        Ok(MetricsSource {
            control,
            path,
            url: url.to_owned(),
            names: keep,
        })
    }

    /// One scrape: the kept series' values.
    pub async fn scrape(&self) -> Result<BTreeMap<String, f64>> {
        let body = self.control.get_text(&self.path).await?;
        let all = parse(&body)?;
        Ok(self
            .names
            .iter()
            .filter_map(|n| Some((n.clone(), *all.get(n)?)))
            .collect())
    }
}

/// The series of a body that must be Prometheus text.
fn check_body(url: &str, body: &str) -> Result<BTreeMap<String, f64>> {
    let head = body.trim_start();
    if head.starts_with('<') {
        return Err(UsageError(format!(
            "{url} answers HTML, not Prometheus text (is it the metrics path?)"
        ))
        .into());
    }
    let series = parse(body).map_err(|e| UsageError(format!("{url}: not Prometheus text: {e}")))?;
    if series.is_empty() {
        return Err(UsageError(format!("{url} answers no Prometheus series")).into());
    }
    Ok(series)
}

/// `http://host:port/path?q` into (`http://host:port`, `/path?q`).
fn split_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| UsageError(format!("--metrics {url}: only http:// URLs")))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/metrics" } else { path };
    Ok((format!("http://{host}"), path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_summed_over_labels_and_html_is_refused() {
        let body =
            "# TYPE a counter\na_total{r=\"x\"} 2\na_total{r=\"y\"} 3\n# TYPE g gauge\ng 7.5\n";
        let s = parse(body).unwrap();
        assert_eq!(s["a_total"], 5.0);
        assert_eq!(s["g"], 7.5);
        assert!(check_body("u", "<!doctype html><p>hi</p>").is_err());
        assert!(check_body("u", "").is_err());
        assert_eq!(
            split_url("http://127.0.0.1:9/metrics?x=1").unwrap(),
            ("http://127.0.0.1:9".to_owned(), "/metrics?x=1".to_owned())
        );
        assert_eq!(split_url("http://h:1").unwrap().1, "/metrics");
    }
}
