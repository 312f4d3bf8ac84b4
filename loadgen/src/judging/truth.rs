//! The ground-truth check: the slope the catalogue's per-request truth
//! predicts at the achieved rate (less what a draining worker absorbs),
//! against the measured one.

use std::collections::BTreeMap;

use leaklab_model::run::{GroundTruth, SignalFit};
use leaklab_model::Scenario;

/// Expected slope from the catalogue's truth × the achieved triggering rate
/// (less the catalogue's `drain_per_s`, when it has one), against the
/// measured slope of the class's signal.
pub fn ground_truth(
    scenario: Option<&Scenario>,
    signals: &BTreeMap<String, SignalFit>,
    rate_achieved: f64,
) -> Option<GroundTruth> {
    let scenario = scenario?;
    let (signal, per_request) = scenario.truth()?;
    let measured = signals.get(signal)?.slope_per_s;
    let retained_rate = (rate_achieved - scenario.drain_per_s.unwrap_or(0.0)).max(0.0);
    let expected = per_request * retained_rate;
    if expected <= 0.0 {
        return None;
    }
    Some(GroundTruth {
        signal: signal.into(),
        per_request,
        rate_achieved,
        expected_slope_per_s: expected,
        measured_slope_per_s: measured,
        error_pct: 100.0 * (measured - expected) / expected,
    })
}
