//! A short `loadgen hunt` end to end: two leaks of different classes found,
//! classified, their artifacts written, and the fix proven flat.

use serde_json::Value;

use crate::helpers::{loadgen, scratch};

#[test]
fn a_short_hunt_names_both_leaks_writes_their_artifacts_and_proves_the_fix() {
    let out = scratch("hunt");
    let out_arg = out.display().to_string();
    let (code, stdout, stderr) = loadgen(&[
        "hunt",
        "--duration",
        "16s",
        "--warmup",
        "5s",
        "--out",
        &out_arg,
        "--json",
    ]);
    assert_eq!(
        code, 3,
        "hunt should exit 3 (leaks found); stderr:\n{stderr}"
    );
    let report: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    assert_eq!(report["schema"], "leaklab.hunt/v1");
    let findings = report["findings"].as_array().expect("findings");
    let find = |scenario: &str| {
        findings
            .iter()
            .find(|f| f["scenario"] == scenario)
            .unwrap_or_else(|| panic!("{scenario} not found: {findings:?}"))
    };
    let cache = find("unbounded-cache");
    assert_eq!(
        (cache["class"].as_str(), cache["component"].as_str()),
        (Some("retention"), Some("cache"))
    );
    let tasks = find("task-leak");
    assert_eq!(
        (tasks["class"].as_str(), tasks["component"].as_str()),
        (Some("task-leak"), Some("fanout"))
    );

    // The artifacts it names exist and are what they claim to be.
    let diff = std::fs::read_to_string(cache["artifact"].as_str().unwrap()).expect("heap diff");
    // The top growth is the cache's values, not the profiler's own tables.
    let top = diff.lines().nth(1).unwrap_or_default();
    assert!(
        top.contains("compute_value"),
        "the heap diff's top site is not compute_value:\n{diff}"
    );
    let census = std::fs::read_to_string(tasks["artifact"].as_str().unwrap()).expect("task census");
    // The site with the most live tasks is the fan-out's collector spawn.
    let top_site = census
        .lines()
        .find(|l| l.contains(" alive at "))
        .unwrap_or_default();
    assert!(
        top_site.contains("components/fanout.rs"),
        "the task census does not point at the fan-out:\n{}",
        &census[..census.len().min(2000)]
    );
    let pprof = std::fs::read(out.join("heap-end.pb.gz")).expect("pprof profile");
    assert_eq!(&pprof[..2], &[0x1f, 0x8b], "the profile is not gzipped");
    let svg = std::fs::read_to_string(out.join("heap-end.svg")).expect("flamegraph");
    assert!(svg.contains("<svg"), "the flamegraph is not an SVG");
    assert!(
        std::path::Path::new(report["report"].as_str().unwrap()).exists(),
        "no HTML report"
    );

    // With the fixes on, the identical load leaves the floor flat.
    assert_eq!(
        report["after_fix"]["leak"], false,
        "after the fix: {}",
        report["after_fix"]
    );
    assert!(
        report["after_fix"]["alive_tasks_slope_per_s"]
            .as_f64()
            .unwrap()
            < 1.0
    );
}

/// The blind hunt against a mystery with one leak (seed 9 draws one and no
/// decoy over the catalogue; which one the test reads from `loadgen grade`,
/// so it holds when the catalogue grows): named from evidence,
/// graded perfect; and, told to switch off the wrong flag, it says the fix
/// is not proven (exit 4), never "flat".
#[test]
fn a_blind_hunt_names_the_mystery_leak_and_a_wrong_fix_is_not_proven() {
    let seed = "9";
    let (code, stdout, stderr) = loadgen(&["grade", "--mystery", seed, "--json"]);
    assert_eq!(
        code, 5,
        "grading no answer to a one-leak mystery fails; {stderr}"
    );
    let key: Value = serde_json::from_str(&stdout).unwrap();
    let on: Vec<&str> = key["reveal"]["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(on.len(), 1, "seed {seed} should draw one leak: {key}");

    let out = scratch("blind-wrong-fix");
    let out_arg = out.display().to_string();
    let (code, _, stderr) = loadgen(&[
        "hunt",
        "--blind",
        "--mystery",
        seed,
        "--duration",
        "24s",
        "--warmup",
        "6s",
        "--fix-only",
        "churn",
        "--out",
        &out_arg,
        "--json",
    ]);
    assert_eq!(
        code, 4,
        "a wrong fix is not proven (exit 4); stderr:\n{stderr}"
    );
    assert!(stderr.contains("FIX NOT PROVEN"), "{stderr}");
    let hunt = out.join("hunt.json");
    let report: Value = serde_json::from_slice(&std::fs::read(&hunt).unwrap()).unwrap();
    assert_eq!(report["blind"], true);
    assert_eq!(report["fix_proven"], false, "{report}");
    assert_eq!(
        report["leaks"].as_array().map(Vec::len),
        Some(0),
        "a blind hunt is told nothing"
    );
    let named: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["scenario"].as_str())
        .collect();
    assert!(
        named.contains(&on[0]),
        "the hunt named {named:?}, the mystery is {on:?}"
    );

    // Its answer graded the same way a learner's is.
    let hunt_arg = hunt.display().to_string();
    let (code, _, stderr) = loadgen(&["grade", "--mystery", seed, "--answer-file", &hunt_arg]);
    assert_eq!(code, 0, "the hunt's own answer grades perfect; {stderr}");
}
