//! The leak catalogue: every seeded scenario's id, class, trigger and ground truth.
//!
//! The catalogue is documented in `docs/catalogue.md`. Ids are stable: they are
//! the runtime flag names, the Cargo feature names (`leak-<id>`), the write-up
//! names in `fixes/` and the names in JSON output. Ground truth is computed from
//! the running [`Config`], so `scenarios --json` stays true when a parameter
//! such as the cached value size is changed.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::config::Config;

/// What a scenario's signals look like; the verdict a load run must reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeakClass {
    /// Live heap (`allocated`) and RSS climb; tasks flat.
    Retention,
    /// Alive tokio tasks climb, with the heap they pin.
    TaskLeak,
    /// RSS climbs while the allocator's `allocated` stays flat.
    OffHeap,
    /// RSS stays at a spike's peak while `allocated` falls back.
    RssRetained,
    /// Rose once to a high-water mark, then flat.
    Plateau,
    /// Allocation rate only; the `allocated` floor is flat (no leak).
    Churn,
    /// Rises to a ceiling, then flat (no leak).
    Bounded,
}

impl LeakClass {
    /// The kebab-case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            LeakClass::Retention => "retention",
            LeakClass::TaskLeak => "task-leak",
            LeakClass::OffHeap => "off-heap",
            LeakClass::RssRetained => "rss-retained",
            LeakClass::Plateau => "plateau",
            LeakClass::Churn => "churn",
            LeakClass::Bounded => "bounded",
        }
    }
}

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

scenario_ids! {
    UnboundedCache => "unbounded-cache", "leak-unbounded-cache",
    SubslicePin => "subslice-pin", "leak-subslice-pin",
    LapsedListener => "lapsed-listener", "leak-lapsed-listener",
    ClosureCapture => "closure-capture", "leak-closure-capture",
    ArcCycle => "arc-cycle", "leak-arc-cycle",
    LabelCardinality => "label-cardinality", "leak-label-cardinality",
    UnboundedQueue => "unbounded-queue", "leak-unbounded-queue",
    PoolNoReset => "pool-no-reset", "leak-pool-no-reset",
    TaskLeak => "task-leak", "leak-task-leak",
    TimerPerRequest => "timer-per-request", "leak-timer-per-request",
    OffheapMmap => "offheap-mmap", "leak-offheap-mmap",
    RssRetained => "rss-retained", "leak-rss-retained",
    MapNoShrink => "map-no-shrink", "leak-map-no-shrink",
    Churn => "churn", "leak-churn",
    BoundedCache => "bounded-cache", "leak-bounded-cache",
    VecRegrowth => "vec-regrowth", "leak-vec-regrowth",
}

impl ScenarioId {
    /// Position in [`ScenarioId::ALL`], for per-scenario arrays.
    pub fn index(self) -> usize {
        self as usize
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

/// One HTTP step of a scenario's trigger. `{key}` anywhere in `path` (query
/// included) is replaced by the triggering request's distinct key; a body of
/// `body_bytes` opaque bytes is sent when non-zero.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub method: &'static str,
    pub path: &'static str,
    pub body_bytes: u64,
    /// Which triggering requests run this step: 1 = every one (the default),
    /// N = every N-th (the 1st, N+1-th, ...), 0 = only the first of a run
    /// (a one-shot job such as `rss-retained`'s batch).
    pub every: u64,
}

/// A catalogue entry with its ground truth at the running configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    pub id: &'static str,
    pub class: LeakClass,
    pub component: &'static str,
    /// The trigger's method and path template (the first step of `recipe`).
    pub method: &'static str,
    pub path: &'static str,
    /// Steps one "triggering request" consists of, in order (most scenarios: one).
    pub recipe: Vec<Step>,
    /// Live heap (`allocated`) retained per triggering request with the leak on.
    pub bytes_per_request: u64,
    /// Alive tokio tasks retained per triggering request with the leak on.
    pub tasks_per_request: u64,
    /// RSS retained per triggering request with the leak on.
    pub rss_bytes_per_request: u64,
    /// Plateau scenarios: the live heap the leak holds once it has risen to
    /// its high-water mark (0 for the other classes).
    pub high_water_bytes: u64,
    /// Triggering requests per second a load run should use, when the
    /// default would overload the route (e.g. a burst of 16,384 sessions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Triggering requests per second the component absorbs without
    /// retaining (a worker draining its queue): the expected slope is
    /// ground truth x (rate - drain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_per_s: Option<f64>,
    /// True for the scenarios that must NOT be called a leak.
    pub negative_control: bool,
    /// The `/debug/memory` component gauge that moves with this scenario.
    pub gauge: &'static str,
    /// One line: what retains what, on the leaky path.
    pub leaky_path: &'static str,
    /// One line: what the fixed twin does instead.
    pub fixed_path: &'static str,
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

impl Step {
    /// A `GET` with no body.
    pub fn get(path: &'static str) -> Step {
        Step {
            method: "GET",
            path,
            body_bytes: 0,
            every: 1,
        }
    }

    /// A step with `method` and a body of `body_bytes` bytes.
    pub fn with_body(method: &'static str, path: &'static str, body_bytes: u64) -> Step {
        Step {
            method,
            path,
            body_bytes,
            every: 1,
        }
    }

    /// Runs this step only on every `n`-th triggering request (0: once per run).
    pub fn every(mut self, n: u64) -> Step {
        self.every = n;
        self
    }
}

impl Scenario {
    /// A catalogue entry with no ground truth yet; chain the setters below.
    pub fn new(
        id: ScenarioId,
        class: LeakClass,
        component: &'static str,
        recipe: Vec<Step>,
    ) -> Scenario {
        assert!(!recipe.is_empty(), "a scenario needs at least one step");
        Scenario {
            id: id.as_str(),
            class,
            component,
            method: recipe[0].method,
            path: recipe[0].path,
            recipe,
            bytes_per_request: 0,
            tasks_per_request: 0,
            rss_bytes_per_request: 0,
            high_water_bytes: 0,
            rate: None,
            drain_per_s: None,
            negative_control: matches!(class, LeakClass::Churn | LeakClass::Bounded),
            gauge: "",
            leaky_path: "",
            fixed_path: "",
        }
    }

    /// Live heap retained per triggering request; RSS follows the heap.
    pub fn retains(mut self, bytes: u64) -> Self {
        self.bytes_per_request = bytes;
        self.rss_bytes_per_request = bytes;
        self
    }

    /// RSS retained per triggering request when it differs from the heap's.
    pub fn rss(mut self, bytes: u64) -> Self {
        self.rss_bytes_per_request = bytes;
        self
    }

    /// The rate a load run should use for this scenario.
    pub fn rate(mut self, per_s: f64) -> Self {
        self.rate = Some(per_s);
        self
    }

    /// Triggering requests per second absorbed without retention.
    pub fn drain(mut self, per_s: f64) -> Self {
        self.drain_per_s = Some(per_s);
        self
    }

    /// Plateau scenarios: the live heap held at the high-water mark.
    pub fn high_water(mut self, bytes: u64) -> Self {
        self.high_water_bytes = bytes;
        self
    }

    /// Alive tasks retained per triggering request.
    pub fn tasks(mut self, tasks: u64) -> Self {
        self.tasks_per_request = tasks;
        self
    }

    /// The component gauge that moves with the scenario.
    pub fn gauge(mut self, gauge: &'static str) -> Self {
        self.gauge = gauge;
        self
    }

    /// One line each: what the leaky path retains, what the fixed one does.
    pub fn paths(mut self, leaky: &'static str, fixed: &'static str) -> Self {
        self.leaky_path = leaky;
        self.fixed_path = fixed;
        self
    }
}

/// The entry for one id, from the component module that implements it.
pub fn scenario(id: ScenarioId, config: &Config) -> Scenario {
    crate::components::scenario(id, config)
}
