//! The scenario catalogue: every seeded scenario's id, class, trigger and
//! ground truth, as `leaklab-service scenarios --json` and
//! `GET /admin/scenarios` print it and loadgen reads it. The service builds
//! its entries with the constructors here; loadgen works from the JSON, not
//! from knowledge of particular scenarios. `docs/catalogue.md` describes each.

use serde::{Deserialize, Serialize};

use crate::LeakClass;

/// One HTTP step of a scenario's trigger. `{key}` anywhere in `path` (query
/// included) is replaced by the triggering request's distinct key; a body of
/// `body_bytes` opaque bytes is sent when non-zero.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub body_bytes: u64,
    /// Which triggering requests run this step: 1 = every one (the default),
    /// N = every N-th (the 1st, N+1-th, ...), 0 = only the first of a run
    /// (a one-shot job such as `rss-retained`'s batch).
    #[serde(default = "every_request")]
    pub every: u64,
}

fn every_request() -> u64 {
    1
}

impl Step {
    /// A `GET` with no body.
    pub fn get(path: impl Into<String>) -> Step {
        Step::with_body("GET", path, 0)
    }

    /// A step with `method` and a body of `body_bytes` bytes.
    pub fn with_body(method: impl Into<String>, path: impl Into<String>, body_bytes: u64) -> Step {
        Step {
            method: method.into(),
            path: path.into(),
            body_bytes,
            every: 1,
        }
    }

    /// Runs this step only on every `n`-th triggering request (0: once per run).
    pub fn every(mut self, n: u64) -> Step {
        self.every = n;
        self
    }

    /// Whether triggering request number `i` (0-based, counted per run)
    /// runs this step.
    pub fn runs_on(&self, i: u64) -> bool {
        match self.every {
            0 => i == 0,
            n => i % n == 0,
        }
    }
}

/// A catalogue entry with its ground truth at the service's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub id: String,
    /// The verdict a load run must reach with the leak on.
    pub class: LeakClass,
    #[serde(default)]
    pub component: String,
    /// The trigger's method and path template (the first step of `recipe`).
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub path: String,
    /// Steps one "triggering request" consists of, in order (most scenarios: one).
    pub recipe: Vec<Step>,
    /// Live heap (`allocated`) retained per triggering request with the leak on.
    #[serde(default)]
    pub bytes_per_request: u64,
    /// Alive tokio tasks retained per triggering request with the leak on.
    #[serde(default)]
    pub tasks_per_request: u64,
    /// RSS retained per triggering request with the leak on.
    #[serde(default)]
    pub rss_bytes_per_request: u64,
    /// Plateau scenarios: the live heap the leak holds once it has risen to
    /// its high-water mark (0 for the other classes).
    #[serde(default)]
    pub high_water_bytes: u64,
    /// Triggering requests per second a load run should use, when the
    /// default would overload the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Triggering requests per second the component absorbs without
    /// retaining (a worker draining its queue): the expected slope is
    /// ground truth × (rate − drain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_per_s: Option<f64>,
    /// True for the scenarios that must NOT be called a leak.
    #[serde(default)]
    pub negative_control: bool,
    /// The `/debug/memory` component gauge that moves with this scenario.
    #[serde(default)]
    pub gauge: String,
    /// One line: what retains what, on the leaky path.
    #[serde(default)]
    pub leaky_path: String,
    /// One line: what the fixed twin does instead.
    #[serde(default)]
    pub fixed_path: String,
    /// The source file of the code that retains, as heap profiles name
    /// allocation sites (`src/components/cache.rs`): where an allocation
    /// site that grows points to.
    #[serde(default)]
    pub source: String,
}

impl Scenario {
    /// An entry with no ground truth yet; chain the setters below. The
    /// negative controls are the classes that are not leaks.
    pub fn new(
        id: impl Into<String>,
        class: LeakClass,
        component: impl Into<String>,
        recipe: Vec<Step>,
    ) -> Scenario {
        assert!(!recipe.is_empty(), "a scenario needs at least one step");
        Scenario {
            id: id.into(),
            class,
            component: component.into(),
            method: recipe[0].method.clone(),
            path: recipe[0].path.clone(),
            recipe,
            bytes_per_request: 0,
            tasks_per_request: 0,
            rss_bytes_per_request: 0,
            high_water_bytes: 0,
            rate: None,
            drain_per_s: None,
            negative_control: !class.is_leak(),
            gauge: String::new(),
            leaky_path: String::new(),
            fixed_path: String::new(),
            source: String::new(),
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
    pub fn gauge(mut self, gauge: impl Into<String>) -> Self {
        self.gauge = gauge.into();
        self
    }

    /// One line each: what the leaky path retains, what the fixed one does.
    pub fn paths(mut self, leaky: impl Into<String>, fixed: impl Into<String>) -> Self {
        self.leaky_path = leaky.into();
        self.fixed_path = fixed.into();
        self
    }

    /// Largest per-request footprint in bytes (heap, RSS or request body),
    /// used to keep a load run inside the target's leak budget.
    pub fn footprint_bytes(&self) -> u64 {
        let body: u64 = self.recipe.iter().map(|s| s.body_bytes).sum();
        self.bytes_per_request
            .max(self.rss_bytes_per_request)
            .max(body)
    }

    /// The signal whose slope the ground truth predicts, and the truth per
    /// triggering request; `None` for classes without a per-request truth
    /// (plateau, rss-retained, the negative controls) or a zero truth.
    pub fn truth(&self) -> Option<(&'static str, f64)> {
        let (signal, per_request) = match self.class {
            LeakClass::Retention => ("allocated", self.bytes_per_request),
            LeakClass::TaskLeak => ("alive_tasks", self.tasks_per_request),
            LeakClass::OffHeap => ("rss", self.rss_bytes_per_request),
            LeakClass::RssRetained
            | LeakClass::Plateau
            | LeakClass::RssGrowth
            | LeakClass::Churn
            | LeakClass::Bounded
            | LeakClass::None => return None,
        };
        (per_request > 0).then_some((signal, per_request as f64))
    }
}

/// An id that is not in the catalogue.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown scenario `{id}` (known: {known})")]
pub struct UnknownScenario {
    pub id: String,
    /// The catalogue's ids, comma-separated.
    pub known: String,
}

/// The whole catalogue, in its order. Serialises as a JSON array.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Catalogue(pub Vec<Scenario>);

impl Catalogue {
    /// The entry for `id`, or an error that lists the known ids.
    pub fn find(&self, id: &str) -> Result<&Scenario, UnknownScenario> {
        self.0
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| UnknownScenario {
                id: id.to_owned(),
                known: self.ids().join(", "),
            })
    }

    /// Every id, in catalogue order.
    pub fn ids(&self) -> Vec<&str> {
        self.0.iter().map(|s| s.id.as_str()).collect()
    }

    /// The entries.
    pub fn iter(&self) -> std::slice::Iter<'_, Scenario> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_and_once_per_run_steps_run_once() {
        let s = Scenario::new(
            "rss-retained",
            LeakClass::RssRetained,
            "batch",
            vec![Step::with_body("POST", "/batch?job={key}", 0).every(0)],
        )
        .retains(0);
        let json = serde_json::to_string(&Catalogue(vec![s.clone()])).unwrap();
        let back: Catalogue = serde_json::from_str(&json).unwrap();
        assert_eq!(back.find("rss-retained").unwrap(), &s);
        let step = &back.0[0].recipe[0];
        assert_eq!((0..100).filter(|&i| step.runs_on(i)).count(), 1);
        assert!(Step::get("/x").every(4).runs_on(8) && !Step::get("/x").every(4).runs_on(9));
        let err = back.find("nope").unwrap_err();
        assert!(err.to_string().contains("known: rss-retained"), "{err}");
    }

    #[test]
    fn truth_follows_the_class_signal() {
        let s = Scenario::new("t", LeakClass::TaskLeak, "c", vec![Step::get("/x/{key}")])
            .retains(4640)
            .tasks(1);
        assert_eq!(s.truth(), Some(("alive_tasks", 1.0)));
        assert_eq!(s.footprint_bytes(), 4640);
        assert!(!s.negative_control);
        let churn = Scenario::new("c", LeakClass::Churn, "c", vec![Step::get("/c")]);
        assert!(churn.negative_control && churn.truth().is_none());
    }
}
