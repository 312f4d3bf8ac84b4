//! A Prometheus server as the memory source: a range query
//! (`GET /api/v1/query_range`) read into one point list per series, and
//! those points turned into loadgen's samples so the same judgement (slope,
//! trend test, class, time-to-OOM) runs over them. For `loadgen judge
//! --prometheus` and `loadgen canary --prometheus`.
//!
//! What a series means is read from its name, because that is all a query
//! result says about it: resident memory (`*resident*`, `*rss*`,
//! `*working_set*`) is judged as RSS seen from outside (`rss-growth` when it
//! climbs: retention and off-heap memory cannot be told apart), a live heap
//! (`*allocated*`) as the allocator's `allocated`, a task count (`*tasks*`)
//! as alive tasks. Anything else is judged as resident memory, and the
//! verdict says that its kind was not known.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use leaklab_model::run::{Phase, Sample, TargetMemory};
use serde::Deserialize;

use super::metrics::RESIDENT;
use super::{Control, ControlError, Target};
use crate::errors::UsageError;

/// How long a range query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// One series of a range query's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeSeries {
    pub labels: BTreeMap<String, String>,
    /// (Unix seconds, value).
    pub points: Vec<(f64, f64)>,
}

impl RangeSeries {
    /// `name{label="v",...}`, as Prometheus prints a series.
    pub fn display(&self) -> String {
        let name = self.labels.get("__name__").cloned().unwrap_or_default();
        let labels: Vec<String> = self
            .labels
            .iter()
            .filter(|(k, _)| *k != "__name__")
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        if labels.is_empty() {
            name
        } else {
            format!("{name}{{{}}}", labels.join(","))
        }
    }
}

/// What a series measures, from its name (or the query's text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Resident,
    Heap,
    Tasks,
    Unknown,
}

impl Kind {
    /// Reads the kind from a metric name or a query.
    pub fn of(text: &str) -> Kind {
        let t = text.to_ascii_lowercase();
        if t.contains("allocated") {
            Kind::Heap
        } else if t.contains("tasks") {
            Kind::Tasks
        } else if t.contains("resident") || t.contains("rss") || t.contains("working_set") {
            Kind::Resident
        } else {
            Kind::Unknown
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<ResultSeries>,
}

#[derive(Deserialize)]
struct ResultSeries {
    metric: BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

/// Reads a query_range answer. A value Prometheus could not compute
/// (`NaN`, `+Inf`) is left out.
pub fn parse_answer(body: &[u8]) -> Result<Vec<RangeSeries>> {
    let answer: Answer = serde_json::from_slice(body).map_err(|e| {
        anyhow!(UsageError(format!(
            "the answer is not Prometheus's query API JSON ({e}): is the URL a Prometheus server?"
        )))
    })?;
    if answer.status != "success" {
        bail!(UsageError(format!(
            "Prometheus rejected the query: {}",
            answer.error.unwrap_or_else(|| answer.status.clone())
        )));
    }
    let data = answer
        .data
        .ok_or_else(|| anyhow!("Prometheus answered success without data"))?;
    if data.result_type != "matrix" {
        bail!(UsageError(format!(
            "the query gave a {} result; a range query needs an instant vector expression",
            data.result_type
        )));
    }
    Ok(data
        .result
        .into_iter()
        .map(|r| RangeSeries {
            labels: r.metric,
            points: r
                .values
                .into_iter()
                .filter_map(|(t, v)| Some((t, v.parse::<f64>().ok().filter(|v| v.is_finite())?)))
                .collect(),
        })
        .collect())
}

/// Runs `query` over `[start, end]` (Unix seconds) every `step` against
/// the Prometheus at `server`.
pub async fn query_range(
    server: &Target,
    query: &str,
    start: f64,
    end: f64,
    step: Duration,
) -> Result<Vec<RangeSeries>> {
    let params: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", query)
        .append_pair("start", &format!("{start:.3}"))
        .append_pair("end", &format!("{end:.3}"))
        .append_pair("step", &format!("{}", step.as_secs_f64()))
        .finish();
    let path = format!("/api/v1/query_range?{params}");
    let control = Control::new(server);
    match control.get_bytes_within(&path, QUERY_TIMEOUT).await {
        Ok(body) => parse_answer(&body),
        Err(ControlError::Status { status, .. }) if status.is_client_error() => {
            bail!(UsageError(format!(
                "Prometheus at {} rejected the query `{query}` (HTTP {status}): check it in its expression browser",
                server.base
            )))
        }
        Err(e) => Err(anyhow!(e).context(format!("querying Prometheus at {}", server.base))),
    }
}

/// The points of one series as loadgen's samples, the first `warmup`
/// seconds marked as warm-up; `t` counts from the end of warm-up's start.
pub fn samples(series: &RangeSeries, kind: Kind, warmup: Duration) -> Vec<Sample> {
    let Some(&(t0, _)) = series.points.first() else {
        return Vec::new();
    };
    series
        .points
        .iter()
        .map(|&(ts, v)| {
            let t = ts - t0;
            let phase = if t < warmup.as_secs_f64() {
                Phase::Warmup
            } else {
                Phase::Measure
            };
            let (memory, metrics) = match kind {
                Kind::Resident | Kind::Unknown => {
                    (None, Some(BTreeMap::from([(RESIDENT.to_owned(), v)])))
                }
                Kind::Heap => (
                    Some(TargetMemory {
                        allocated: v as u64,
                        active: v as u64,
                        resident: v as u64,
                        rss: v as u64,
                        ..TargetMemory::default()
                    }),
                    None,
                ),
                Kind::Tasks => (
                    Some(TargetMemory {
                        alive_tasks: v as u64,
                        ..TargetMemory::default()
                    }),
                    None,
                ),
            };
            Sample {
                t,
                phase,
                requests: 0,
                in_flight: 0,
                memory,
                proc: None,
                cgroup: None,
                metrics,
                error: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matrix_answer_parses_and_skips_values_that_are_not_numbers() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"process_resident_memory_bytes","job":"canary"},
             "values":[[1700000000,"100"],[1700000005,"NaN"],[1700000010,"300"]]}]}}"#;
        let series = parse_answer(body).unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].points, [(1.7e9, 100.0), (1.7e9 + 10.0, 300.0)]);
        assert_eq!(
            series[0].display(),
            "process_resident_memory_bytes{job=\"canary\"}"
        );
    }

    #[test]
    fn an_error_or_a_page_that_is_not_the_api_is_a_usage_error() {
        let err = parse_answer(
            br#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("parse error"), "{err}");
        assert!(err.downcast_ref::<UsageError>().is_some());
        let err = parse_answer(b"<html>hello</html>").unwrap_err();
        assert!(err.to_string().contains("Prometheus server"), "{err}");
    }

    #[test]
    fn kinds_come_from_the_name() {
        assert_eq!(Kind::of("process_resident_memory_bytes"), Kind::Resident);
        assert_eq!(Kind::of("leaklab_jemalloc_allocated_bytes"), Kind::Heap);
        assert_eq!(Kind::of("leaklab_tokio_alive_tasks"), Kind::Tasks);
        assert_eq!(Kind::of("queue_depth"), Kind::Unknown);
    }

    #[test]
    fn points_become_samples_with_warm_up_first() {
        let s = RangeSeries {
            labels: BTreeMap::new(),
            points: (0..10).map(|i| (1000.0 + i as f64 * 5.0, 1e6)).collect(),
        };
        let samples = samples(&s, Kind::Heap, Duration::from_secs(20));
        assert_eq!(samples.len(), 10);
        assert_eq!(samples[3].phase, Phase::Warmup);
        assert_eq!(samples[4].phase, Phase::Measure);
        assert_eq!(samples[9].memory.as_ref().unwrap().allocated, 1_000_000);
    }
}
