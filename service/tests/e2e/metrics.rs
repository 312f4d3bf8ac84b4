//! `/metrics` follows Prometheus conventions: every family has HELP and
//! TYPE, counters end in `_total`, the standard `process_*` families are
//! there, and every leak flag is reported, 0 or 1.

use std::collections::BTreeMap;

use crate::helpers::Service;

#[tokio::test]
async fn metrics_follow_prometheus_conventions() {
    let svc = Service::start(&["--leak", "churn"]);
    let text = String::from_utf8(svc.get("/metrics").await.body.to_vec()).unwrap();
    let mut types: BTreeMap<&str, &str> = BTreeMap::new();
    let mut helps = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("#"), Some("TYPE"), Some(name)) => {
                types.insert(name, words.next().unwrap());
            }
            (Some("#"), Some("HELP"), Some(name)) => helps.push(name),
            _ => {}
        }
    }
    for (name, kind) in &types {
        assert!(helps.contains(name), "{name} has no HELP");
        assert_eq!(
            *kind == "counter",
            name.ends_with("_total"),
            "{name} is a {kind}: counters and only counters end in _total"
        );
    }
    for standard in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert_eq!(types.get(standard), Some(&"gauge"), "{standard}");
    }
    assert!(
        !types.contains_key("leaklab_component"),
        "one family per component number"
    );
    assert_eq!(types.get("leaklab_cache_hits_total"), Some(&"counter"));
    let flags: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("leaklab_leak_enabled{"))
        .collect();
    assert_eq!(
        flags.len(),
        leaklab_service::catalogue::ScenarioId::ALL.len(),
        "every flag, on or off: {flags:?}"
    );
    assert!(flags.contains(&"leaklab_leak_enabled{scenario=\"churn\"} 1"));
    assert!(flags.contains(&"leaklab_leak_enabled{scenario=\"task-leak\"} 0"));
}
