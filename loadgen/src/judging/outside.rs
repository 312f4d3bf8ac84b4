//! Judging a target seen only from outside: a service that is not a
//! leaklab service has no allocator statistics and no task count, only its
//! pid's RSS (or its exposition's `process_resident_memory_bytes`) and the
//! series named with `--metric`. RSS that keeps climbing is a leak; what
//! kind cannot be told without the allocator's numbers (retention and
//! off-heap memory look alike from outside), and the verdict says so
//! (`rss-growth`) instead of guessing.

use std::collections::BTreeMap;

use leaklab_model::run::{Finding, SignalFit, Verdict};
use leaklab_model::LeakClass;

use super::oom;
use super::signals::{tail_level, Series};
use crate::human::{human_bytes, MIB};

/// RSS this far above its pre-load floor, then flat, is a bounded rise.
const RISE_MIN: f64 = 4.0 * MIB;

/// The verdict from RSS and the named series; `None` when there is no RSS
/// series to judge.
pub(super) fn judge_outside(
    series: &BTreeMap<String, Series>,
    signals: &BTreeMap<String, SignalFit>,
    limit: Option<u64>,
) -> Option<Verdict> {
    let rss = signals.get("rss").filter(|f| f.n >= 8)?;
    let mut reasons = vec![
        "seen from outside (no /debug/memory): only RSS and the named series; \
         without allocator statistics retention and off-heap memory cannot be told apart"
            .to_owned(),
    ];
    // The named series that climb with it: what the service says it keeps.
    let climbing: Vec<&str> = signals
        .iter()
        .filter(|(name, f)| name.starts_with("metrics.") && f.rising)
        .map(|(name, _)| name.as_str())
        .filter(|name| !name.ends_with("process_resident_memory_bytes"))
        .collect();
    for name in &climbing {
        reasons.push(format!(
            "{} climbs {:.1}/s",
            name.trim_start_matches("metrics."),
            signals[*name].slope_per_s
        ));
    }
    let (class, findings) = if rss.rising {
        reasons.push(format!(
            "RSS climbs {}/s and keeps climbing",
            human_bytes(rss.slope_per_s)
        ));
        let finding = Finding {
            class: LeakClass::RssGrowth,
            component: None,
            gauge: climbing
                .first()
                .map(|n| n.trim_start_matches("metrics.").to_owned()),
            signal: "rss".into(),
            slope_per_s: rss.slope_per_s,
            burn_rate_bytes_per_h: Some(rss.slope_per_s * 3600.0),
        };
        (LeakClass::RssGrowth, vec![finding])
    } else {
        (flat_shape(series.get("rss"), &mut reasons), Vec::new())
    };
    let leak = class.is_leak();
    let (time_to_oom_s, time_to_oom_interval_s) = if leak {
        oom::time_to_oom(signals, "rss", limit)
    } else {
        (None, None)
    };
    Some(Verdict {
        leak,
        class,
        findings,
        time_to_oom_s,
        time_to_oom_interval_s,
        limit_bytes: limit,
        reasons,
    })
}

/// RSS that does not climb: risen and levelled (bounded), or flat.
fn flat_shape(rss: Option<&Series>, reasons: &mut Vec<String>) -> LeakClass {
    let step = rss.and_then(|s| Some(tail_level(s)? - s.baseline()?));
    match step {
        Some(step) if step >= RISE_MIN => {
            reasons.push(format!(
                "RSS rose {} above its floor, then levelled off: high, not leaking",
                human_bytes(step)
            ));
            LeakClass::Bounded
        }
        _ => {
            reasons.push("RSS does not climb after warm-up".into());
            LeakClass::None
        }
    }
}
