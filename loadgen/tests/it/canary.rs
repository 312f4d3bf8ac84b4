//! `loadgen canary` end to end: two real services under identical load, a
//! leak's flag flipped on the canary mid-run. One body, two flag plans with
//! opposite expectations: turned on, the canary regresses; turned on and
//! rolled back, the comparison (after the rollback) finds no regression.

use crate::helpers::{loadgen, scratch};

/// Runs `loadgen canary --spawn` with `toggles`; returns (exit, report, out dir).
fn canary_run(name: &str, toggles: &[&str]) -> (i32, serde_json::Value, std::path::PathBuf) {
    canary_with(name, toggles, &["--duration", "26s"])
}

/// [`canary_run`] with `extra` flags.
fn canary_with(
    name: &str,
    toggles: &[&str],
    extra: &[&str],
) -> (i32, serde_json::Value, std::path::PathBuf) {
    let out = scratch(name);
    let out_s = out.to_string_lossy().to_string();
    let mut args = vec![
        "canary",
        "--spawn",
        "--scenario",
        "task-leak",
        "--rate",
        "150",
        "--warmup",
        "4s",
        "--out",
        &out_s,
        "--json",
    ];
    for t in toggles {
        args.extend(["--toggle", t]);
    }
    args.extend(extra);
    let (code, stdout, stderr) = loadgen(&args);
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("canary JSON ({e}): {stdout}\n{stderr}"));
    (code, report, out)
}

#[test]
fn a_flag_turned_on_in_the_canary_is_a_regression_and_its_rollback_is_not() {
    let (code, r, out) = canary_run("canary-on", &["task-leak@5"]);
    assert_eq!(r["schema"], "leaklab.canary/v1");
    assert_eq!(r["verdict"]["regression"], true, "{r:#}");
    assert_eq!(r["verdict"]["class"], "task-leak", "{r:#}");
    assert_eq!(r["verdict"]["component"], "fanout", "{r:#}");
    assert_eq!(r["baseline"]["verdict"]["leak"], false, "{r:#}");
    assert_eq!(code, 3);
    let applied = r["toggles"][0]["applied_at_s"].as_f64().expect("applied");
    assert!(
        (4.5..8.0).contains(&applied),
        "toggle applied at {applied} s"
    );
    // The window starts after the toggle has settled.
    assert!(r["window_s"][0].as_f64().unwrap() >= applied);
    for f in [
        "canary.json",
        "canary.svg",
        "baseline/samples.jsonl",
        "canary/samples.jsonl",
        "canary/summary.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }

    let (code, r, _) = canary_run("canary-rollback", &["task-leak@4", "task-leak=off@10"]);
    assert_eq!(r["verdict"]["regression"], false, "{r:#}");
    assert_eq!(r["toggles"][1]["enabled"], false);
    assert_eq!(code, 0, "{r:#}");
}

#[test]
fn until_verdict_stops_both_sides_once_the_pair_is_decided() {
    let (code, r, out) = canary_with(
        "canary-until",
        &["task-leak@4"],
        &["--duration", "90s", "--until-verdict"],
    );
    assert_eq!(r["verdict"]["regression"], true, "{r:#}");
    assert_eq!(code, 3);
    let q = &r["sequential"];
    assert_eq!(q["decided_by"], "sequential", "{r:#}");
    assert_eq!(q["decision"], "regression", "{r:#}");
    let after = q["after_toggle_s"].as_f64().expect("after_toggle_s");
    // The window opens 5 s after the toggle; a loud task leak is called soon after.
    assert!(
        (5.0..30.0).contains(&after),
        "decided {after} s after the toggle"
    );
    let end = r["window_s"][1].as_f64().unwrap();
    assert!(end < 45.0, "the window ends at {end} s, long before 90");
    // Both sides stopped: neither ran its 90 s.
    for side in ["baseline", "canary"] {
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(side).join("summary.json")).expect("summary"),
        )
        .expect("JSON");
        let requests = summary["load"]["requests"].as_u64().unwrap();
        assert!(requests < 150 * 60, "{side}: {requests} requests");
    }
}

#[test]
fn canary_usage_errors_exit_2_with_a_message() {
    // Its files go to a scratch directory, never into the source tree.
    let out = scratch("canary-usage");
    let out = out.to_str().unwrap();
    let (code, _, stderr) = loadgen(&[
        "canary",
        "--out",
        out,
        "--spawn",
        "--toggle",
        "no-such-leak@3",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unknown scenario"), "{stderr}");
    let (code, _, stderr) = loadgen(&["canary", "--out", out, "--spawn", "--toggle", "task-leak"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("ID@SECONDS"), "{stderr}");
    let (code, _, stderr) = loadgen(&[
        "canary",
        "--out",
        out,
        "--spawn",
        "--duration",
        "10s",
        "--warmup",
        "2s",
        "--toggle",
        "task-leak@20",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("after the run ends"), "{stderr}");
    let (code, _, stderr) = loadgen(&[
        "canary",
        "--out",
        out,
        "--baseline",
        "http://10.1.2.3:80",
        "--canary",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(code, 2, "{stderr}");
}
