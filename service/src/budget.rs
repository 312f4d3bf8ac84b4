//! The leak budget: a per-scenario cap on what a leaky path may retain.
//!
//! The lab must never take its host down by accident. Every leaky path asks
//! [`LeakBudget::try_retain`] before it keeps something; once a scenario's
//! retained bytes reach the budget, the path stops retaining (it serves the
//! request the fixed way), logs once, and `/debug/memory` shows it under
//! `budget`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

use crate::catalogue::ScenarioId;

/// Per-scenario retained-byte counters against one limit.
#[derive(Debug)]
pub struct LeakBudget {
    limit_bytes: u64,
    /// Bytes each scenario's leaky path currently retains (its own accounting).
    retained: Vec<AtomicU64>,
    /// Set when a scenario first hit the limit, so the warning is logged once.
    exhausted: Vec<AtomicBool>,
    /// Mystery mode: the warning names no scenario.
    anonymous: AtomicBool,
}

/// One scenario's budget state, as reported by `/debug/memory`.
#[derive(Debug, Serialize)]
pub struct BudgetState {
    pub retained_bytes: u64,
    pub exhausted: bool,
}

impl LeakBudget {
    /// A budget of `limit_bytes` per scenario.
    pub fn new(limit_bytes: u64) -> LeakBudget {
        let n = ScenarioId::ALL.len();
        LeakBudget {
            limit_bytes,
            retained: (0..n).map(|_| AtomicU64::new(0)).collect(),
            exhausted: (0..n).map(|_| AtomicBool::new(false)).collect(),
            anonymous: AtomicBool::new(false),
        }
    }

    /// Mystery mode: from now on the budget's log line names no scenario.
    pub fn anonymise(&self) {
        self.anonymous.store(true, Ordering::Relaxed);
    }

    /// How many scenarios have reached the budget.
    pub fn exhausted_count(&self) -> u64 {
        self.exhausted
            .iter()
            .filter(|e| e.load(Ordering::Relaxed))
            .count() as u64
    }

    /// The per-scenario limit.
    pub fn limit_bytes(&self) -> u64 {
        self.limit_bytes
    }

    /// Reserves `bytes` for `id`'s leaky path. Returns false, and retains
    /// nothing, when that would cross the budget.
    pub fn try_retain(&self, id: ScenarioId, bytes: u64) -> bool {
        let counter = &self.retained[id.index()];
        let admitted = counter
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                cur.checked_add(bytes)
                    .filter(|next| *next <= self.limit_bytes)
            })
            .is_ok();
        if !admitted && !self.exhausted[id.index()].swap(true, Ordering::Relaxed) {
            if self.anonymous.load(Ordering::Relaxed) {
                tracing::warn!(
                    limit_bytes = self.limit_bytes,
                    "leak budget reached by a leaky path: it stops retaining (raise --leak-budget to go further)"
                );
            } else {
                tracing::warn!(
                    scenario = %id,
                    limit_bytes = self.limit_bytes,
                    "leak budget reached: the leaky path stops retaining (raise --leak-budget to go further)"
                );
            }
        }
        admitted
    }

    /// Gives back `bytes` that `id`'s leaky path no longer retains.
    pub fn release(&self, id: ScenarioId, bytes: u64) {
        let _ =
            self.retained[id.index()].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                Some(cur.saturating_sub(bytes))
            });
    }

    /// Bytes `id`'s leaky path retains now.
    pub fn retained(&self, id: ScenarioId) -> u64 {
        self.retained[id.index()].load(Ordering::Relaxed)
    }

    /// The scenarios that retain anything or have hit the budget.
    pub fn snapshot(&self) -> BTreeMap<&'static str, BudgetState> {
        ScenarioId::ALL
            .iter()
            .filter_map(|&id| {
                let retained_bytes = self.retained(id);
                let exhausted = self.exhausted[id.index()].load(Ordering::Relaxed);
                (retained_bytes > 0 || exhausted).then_some((
                    id.as_str(),
                    BudgetState {
                        retained_bytes,
                        exhausted,
                    },
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_stops_retaining_at_its_budget_and_others_are_unaffected() {
        let budget = LeakBudget::new(100);
        assert!(budget.try_retain(ScenarioId::UnboundedCache, 60));
        assert!(!budget.try_retain(ScenarioId::UnboundedCache, 60));
        assert_eq!(budget.retained(ScenarioId::UnboundedCache), 60);
        assert!(budget.try_retain(ScenarioId::TaskLeak, 100));
        budget.release(ScenarioId::UnboundedCache, 60);
        assert!(budget.try_retain(ScenarioId::UnboundedCache, 100));
        assert!(budget.snapshot()["unbounded-cache"].exhausted);
    }
}
