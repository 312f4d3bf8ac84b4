//! The leak catalogue: every seeded scenario's id, class, trigger and ground truth.
//!
//! The catalogue is documented in `docs/catalogue.md`. Ids are stable: they are
//! the runtime flag names, the Cargo feature names (`leak-<id>`), the write-up
//! names in `fixes/` and the names in JSON output. Ground truth is computed from
//! the running [`Config`], so `scenarios --json` stays true when a parameter
//! such as the cached value size is changed.

use std::fmt;
use std::str::FromStr;

pub use leaklab_model::{LeakClass, Scenario, Step};

pub use crate::components::ScenarioId;
use crate::config::Config;

/// Declares [`ScenarioId`] from a list of `Variant => "id", "leak-id"`.
/// The list itself sits in `components/mod.rs`, beside the registration of
/// each scenario's module, so that adding a scenario touches one place there.
macro_rules! scenario_ids {
    ($($variant:ident => $id:literal, $feature:literal),+ $(,)?) => {
        /// A scenario id. The order is the catalogue's order.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ScenarioId { $($variant),+ }

        impl ScenarioId {
            /// Every id, in catalogue order.
            pub const ALL: &'static [ScenarioId] = &[$(ScenarioId::$variant),+];

            /// The kebab-case id.
            pub fn as_str(self) -> &'static str {
                match self { $(ScenarioId::$variant => $id),+ }
            }

            /// Whether this build turns the leak on at start (`leak-<id>` feature).
            pub fn on_in_build(self) -> bool {
                match self { $(ScenarioId::$variant => cfg!(feature = $feature)),+ }
            }
        }
    };
}

impl ScenarioId {
    /// Position in [`ScenarioId::ALL`], for per-scenario arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl From<ScenarioId> for String {
    fn from(id: ScenarioId) -> String {
        id.as_str().to_owned()
    }
}

impl fmt::Display for ScenarioId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An id that is not in the catalogue.
#[derive(Debug, thiserror::Error)]
#[error("unknown scenario id `{0}` (see `leaklab-service scenarios`)")]
pub struct UnknownScenario(pub String);

impl FromStr for ScenarioId {
    type Err = UnknownScenario;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ScenarioId::ALL
            .iter()
            .copied()
            .find(|id| id.as_str() == s)
            .ok_or_else(|| UnknownScenario(s.to_owned()))
    }
}

/// Builds the whole catalogue, ground truth computed for `config`.
pub fn catalogue(config: &Config) -> Vec<Scenario> {
    ScenarioId::ALL
        .iter()
        .map(|&id| scenario(id, config))
        .collect()
}

/// jemalloc rounds small requests up to a size class; ground truth uses the
/// rounded size because that is what `stats.allocated` counts.
pub fn size_class(bytes: u64) -> u64 {
    if bytes <= 8 {
        return 8;
    }
    if bytes <= 128 {
        return bytes.div_ceil(16) * 16;
    }
    // Above 128 bytes jemalloc has four classes per doubling.
    let pow = 63 - (bytes - 1).leading_zeros() as u64; // floor(log2(bytes-1))
    let step = 1u64 << (pow - 2);
    bytes.div_ceil(step) * step
}

/// Heap bytes one more entry of `slot_bytes` costs a `HashMap` on average: a
/// hashbrown table is between 7/16 and 7/8 full and has one control byte per
/// slot, which over its doublings averages (slot + 1) × 16·ln 2 / 7 ≈ 11/7.
pub fn map_slot_bytes(slot_bytes: u64) -> u64 {
    (slot_bytes + 1) * 11 / 7
}

/// The entry for one id, from the component module that implements it.
pub fn scenario(id: ScenarioId, config: &Config) -> Scenario {
    crate::components::scenario(id, config)
}
