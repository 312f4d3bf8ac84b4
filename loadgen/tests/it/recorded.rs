//! The classifier against samples recorded from real runs of the service
//! (`tests/data/<scenario>[@variant].jsonl`, trimmed to the fields used;
//! `churn@stall` is a churn run during which the host stalled the service for
//! seconds and loadgen's connections piled up).
//! The expected class is the catalogue's (`tests/data/catalogue.json`), not a
//! verdict written into the test.

use std::path::PathBuf;

use leaklab_model::{Catalogue, LeakClass, Scenario};
use loadgen::judging::judge;
use loadgen::sampling::read_samples;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn catalogue() -> Catalogue {
    serde_json::from_str(&std::fs::read_to_string(data("catalogue.json")).unwrap()).unwrap()
}

fn judged_class(stem: &str) -> (LeakClass, bool, Scenario) {
    let cat = catalogue();
    let id = stem.split('@').next().unwrap();
    let s = cat.find(id).unwrap().clone();
    let samples = read_samples(&data(&format!("{stem}.jsonl"))).unwrap();
    assert!(samples.len() > 40, "{stem}: too few samples");
    let j = judge(&samples, &cat, None);
    (j.verdict.class, j.verdict.leak, s)
}

#[test]
fn every_recorded_run_gets_its_catalogue_class() {
    let mut checked = 0;
    for entry in std::fs::read_dir(data("")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix(".jsonl") else {
            continue;
        };
        let (class, leak, s) = judged_class(stem);
        assert_eq!(class, s.class, "{stem}");
        assert_eq!(leak, !s.negative_control, "{stem}");
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} recorded runs");
}

#[test]
fn a_recorded_leak_cut_off_at_its_warm_up_is_not_judged_on_nothing() {
    // Only the baseline and warm-up of a leak: too little to call anything a leak.
    let samples = read_samples(&data("unbounded-cache.jsonl")).unwrap();
    let short: Vec<_> = samples.into_iter().filter(|s| s.t < 1.0).collect();
    let j = judge(&short, &catalogue(), None);
    assert!(!j.verdict.leak, "{:?}", j.verdict);
}
