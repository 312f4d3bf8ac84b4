//! Runtime leak flags: one switch per catalogue scenario.
//!
//! A flag starts at its build default (the `leak-<id>` Cargo feature), can be
//! set at start (`--leak`, `LEAKLAB_LEAKS`; `--fix`, `LEAKLAB_FIXES`) and
//! toggled while running (`PUT /admin/flags/{id}`). Handlers read the flag once
//! per request, so a toggle takes effect for the next request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::catalogue::ScenarioId;

/// The on/off state of every scenario's leaky path.
#[derive(Debug)]
pub struct Flags {
    /// Indexed by [`ScenarioId::index`]. Relaxed atomics: a flag is an
    /// independent switch, no other memory is published through it.
    on: Vec<AtomicBool>,
}

impl Flags {
    /// Flags at this build's defaults.
    pub fn from_build() -> Flags {
        Flags {
            on: ScenarioId::ALL
                .iter()
                .map(|id| AtomicBool::new(id.on_in_build()))
                .collect(),
        }
    }

    /// Whether `id`'s leaky path is on.
    pub fn is_on(&self, id: ScenarioId) -> bool {
        self.on[id.index()].load(Ordering::Relaxed)
    }

    /// Sets `id`'s flag; returns the previous value.
    pub fn set(&self, id: ScenarioId, enabled: bool) -> bool {
        self.on[id.index()].swap(enabled, Ordering::Relaxed)
    }

    /// Ids whose leaky path is on, in catalogue order.
    pub fn on_ids(&self) -> Vec<&'static str> {
        ScenarioId::ALL
            .iter()
            .filter(|id| self.is_on(**id))
            .map(|id| id.as_str())
            .collect()
    }

    /// Every flag, by id.
    pub fn snapshot(&self) -> BTreeMap<&'static str, bool> {
        ScenarioId::ALL
            .iter()
            .map(|id| (id.as_str(), self.is_on(*id)))
            .collect()
    }
}
