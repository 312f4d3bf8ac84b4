//! Short real runs of the `loadgen` binary against a real `leaklab-service`.

use crate::helpers::{loadgen, scratch, Service};

/// One body for a leak and its negative control: a short run of `scenario`
/// against a service started with `--leak scenario`; returns (exit, summary).
fn short_run(scenario: &str) -> (i32, serde_json::Value) {
    let service = Service::start(&["--leak", scenario]);
    let pid = service.pid().to_string();
    let args = [
        "run",
        "--target",
        service.url(),
        "--pid",
        &pid,
        "--scenario",
        scenario,
        "--rate",
        "200",
        "--duration",
        "14s",
        "--warmup",
        "4s",
        "--json",
    ];
    let (code, stdout, stderr) = loadgen(&args);
    let summary: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("summary JSON ({e}): {stdout}\n{stderr}"));
    (code, summary)
}

#[test]
fn an_unbounded_cache_is_a_retention_leak_and_a_bounded_cache_is_not() {
    let (code, leak) = short_run("unbounded-cache");
    assert_eq!(leak["schema"], "leaklab.run/v1");
    assert_eq!(leak["verdict"]["class"], "retention", "{leak:#}");
    assert_eq!(leak["verdict"]["leak"], true);
    assert_eq!(leak["verdict"]["findings"][0]["component"], "cache");
    assert_eq!(code, 3);
    let err = leak["ground_truth"]["error_pct"]
        .as_f64()
        .expect("ground truth");
    assert!(err.abs() < 10.0, "slope off ground truth by {err}%");
    assert!(leak["load"]["requests"].as_u64().unwrap() > 2000);

    let (code, control) = short_run("bounded-cache");
    assert_eq!(control["verdict"]["leak"], false, "{control:#}");
    assert_eq!(control["verdict"]["class"], "bounded");
    assert_eq!(code, 0);
}

/// One body for a leak and its negative control: `--until-verdict` with a
/// 60 s maximum against a service with the scenario's leak on; returns
/// (exit, summary).
fn run_until_verdict(scenario: &str) -> (i32, serde_json::Value) {
    let service = Service::start(&["--leak", scenario]);
    let pid = service.pid().to_string();
    let args = [
        "run",
        "--target",
        service.url(),
        "--pid",
        &pid,
        "--scenario",
        scenario,
        "--rate",
        "200",
        "--duration",
        "60s",
        "--warmup",
        "4s",
        "--until-verdict",
        "--json",
    ];
    let (code, stdout, stderr) = loadgen(&args);
    let summary: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("summary JSON ({e}): {stdout}\n{stderr}"));
    (code, summary)
}

#[test]
fn until_verdict_stops_a_loud_leak_early_and_never_calls_churn_a_leak() {
    let (code, leak) = run_until_verdict("unbounded-cache");
    let seq = &leak["sequential"];
    assert_eq!(leak["stopped_early"], true, "{leak:#}");
    assert_eq!(seq["decided_by"], "sequential");
    assert_eq!(seq["decision"], "climb");
    assert_eq!(seq["signal"], "allocated");
    let after = seq["decision_after_s"].as_f64().unwrap();
    assert!(
        (2.0..10.0).contains(&after),
        "decided {after} s after warm-up"
    );
    // The class is still the judge's, over the samples taken.
    assert_eq!(leak["verdict"]["class"], "retention");
    assert_eq!(code, 3);
    assert!(leak["load"]["duration_s"].as_f64().unwrap() < 30.0);

    let (code, control) = run_until_verdict("churn");
    assert_eq!(control["verdict"]["leak"], false, "{control:#}");
    assert_eq!(code, 0);
    let seq = &control["sequential"];
    match seq["decided_by"].as_str() {
        Some("sequential") => {
            assert_eq!(seq["decision"], "flat", "{control:#}");
            assert_eq!(control["stopped_early"], true);
        }
        Some("fixed-window") => assert_eq!(control["stopped_early"], false),
        other => panic!("decided_by {other:?}: {control:#}"),
    }
}

#[test]
fn a_task_leak_is_called_a_task_leak_with_spawn_and_writes_its_report() {
    let out = scratch("task-leak");
    let out_s = out.to_string_lossy().to_string();
    let args = [
        "run",
        "--spawn",
        "--scenario",
        "task-leak",
        "--duration",
        "12s",
        "--warmup",
        "3s",
        "--out",
        &out_s,
        "--json",
    ];
    let (code, stdout, stderr) = loadgen(&args);
    let s: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert_eq!(s["verdict"]["class"], "task-leak", "{s:#}");
    assert_eq!(code, 3);
    assert_eq!(s["ground_truth"]["signal"], "alive_tasks");
    for f in [
        "samples.jsonl",
        "summary.json",
        "report.html",
        "memory.svg",
        "tasks.svg",
        "latency.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let lines = std::fs::read_to_string(out.join("samples.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert!(lines >= 2 * 12, "only {lines} samples for 12 s at 4 Hz");
}

#[test]
fn a_target_that_dies_mid_run_is_recorded_and_the_summary_still_written() {
    let service = Service::start(&["--leak", "unbounded-cache"]);
    let pid = service.pid().to_string();
    let out = scratch("died");
    let out_s = out.to_string_lossy().to_string();
    let url = service.url().to_owned();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(5));
        service.kill();
    });
    let args = [
        "run",
        "--target",
        &url,
        "--pid",
        &pid,
        "--scenario",
        "unbounded-cache",
        "--duration",
        "20s",
        "--warmup",
        "2s",
        "--out",
        &out_s,
        "--json",
    ];
    let (code, stdout, stderr) = loadgen(&args);
    killer.join().unwrap();
    let s: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    let at = s["target_died"]["at_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("no target_died: {s:#}"));
    assert!((3.0..9.0).contains(&at), "died at {at}");
    assert!(out.join("summary.json").is_file() && out.join("report.html").is_file());
    assert!(
        s["load"]["duration_s"].as_f64().unwrap() < 15.0,
        "the load should stop when the target dies"
    );
    assert!(code == 1 || code == 3, "exit {code}");
}

#[test]
fn a_once_per_run_batch_job_is_posted_once_however_long_the_run() {
    // rss-retained's recipe posts its batch job with `every: 0`: one job per
    // run, then reads of the job's state on every triggering request.
    let service = Service::start(&["--leak", "rss-retained"]);
    let pid = service.pid().to_string();
    let out = scratch("rss-retained");
    let out_s = out.to_string_lossy().to_string();
    let args = [
        "run",
        "--target",
        service.url(),
        "--pid",
        &pid,
        "--scenario",
        "rss-retained",
        "--duration",
        "6s",
        "--warmup",
        "2s",
        "--out",
        &out_s,
        "--json",
    ];
    let (_, stdout, stderr) = loadgen(&args);
    let s: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    // `--rate auto` keeps a 256 MiB footprint inside the leak budget: ~1/s.
    let requests = s["load"]["requests"].as_u64().unwrap();
    assert!(requests >= 3, "{requests} triggering requests: {s:#}");
    assert_eq!(s["verdict"]["class"], "rss-retained", "{s:#}");
    let samples = loadgen::sampling::read_samples(&out.join("samples.jsonl")).unwrap();
    let jobs = samples
        .iter()
        .rev()
        .find_map(|s| s.memory.as_ref()?.components.get("batch_jobs").copied())
        .expect("a batch_jobs gauge");
    assert_eq!(jobs, 1, "batch jobs posted in one run");
}

#[test]
fn usage_errors_exit_2_and_remote_targets_need_allow_remote() {
    let (code, _, stderr) = loadgen(&[
        "run",
        "--target",
        "http://192.0.2.1:80",
        "--scenario",
        "churn",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--allow-remote"), "{stderr}");
    let (code, _, _) = loadgen(&["run", "--scenario"]);
    assert_eq!(code, 2);
    let (code, _, stderr) = loadgen(&[
        "run",
        "--spawn",
        "--scenario",
        "no-such-scenario",
        "--duration",
        "2s",
        "--warmup",
        "1s",
    ]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn a_dead_address_cannot_be_run_and_exits_1() {
    // Bind and drop a listener: the port is (almost certainly) closed now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let (code, _, stderr) = loadgen(&["run", "--target", &url, "--scenario", "churn"]);
    assert_eq!(code, 1, "{stderr}");
}
