//! The target's scenario catalogue (`GET /admin/scenarios`), as loadgen reads it.
//!
//! loadgen works from this JSON, not from knowledge of particular scenarios:
//! a scenario's `recipe` gives the HTTP steps of one triggering request, and
//! its ground truth (`bytes_per_request`, `tasks_per_request`,
//! `rss_bytes_per_request`) is what a run's measured slope is checked against.
//! Unknown fields are ignored and missing ones default, so the catalogue can
//! grow without breaking loadgen.

use serde::{Deserialize, Serialize};

/// One HTTP step of a triggering request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub method: String,
    /// Path template; `{key}` is replaced by the request's distinct key.
    pub path: String,
    /// Body size; 0 sends no body.
    #[serde(default)]
    pub body_bytes: u64,
}

/// One catalogue entry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Scenario {
    pub id: String,
    /// Expected verdict class (`retention`, `task-leak`, ...).
    pub class: String,
    #[serde(default)]
    pub component: String,
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub recipe: Vec<Step>,
    #[serde(default)]
    pub bytes_per_request: u64,
    #[serde(default)]
    pub tasks_per_request: u64,
    #[serde(default)]
    pub rss_bytes_per_request: u64,
    #[serde(default)]
    pub negative_control: bool,
    /// The `/debug/memory` component gauge that moves with the scenario.
    #[serde(default)]
    pub gauge: String,
    /// Optional: how many triggering requests one run should send at most
    /// (e.g. 1 for a one-shot burst). loadgen honours it when present.
    #[serde(default)]
    pub requests_per_run: Option<u64>,
    /// Optional: triggering requests per second the service absorbs without
    /// retaining anything (a worker that drains a queue); the expected slope
    /// is then truth × (rate − drain).
    #[serde(default)]
    pub drain_per_s: Option<f64>,
    /// Optional: the arrival rate (per second) the scenario is calibrated for.
    #[serde(default)]
    pub rate: Option<f64>,
}

impl Scenario {
    /// The steps of one triggering request: the recipe, or the single
    /// `method path` step for catalogues without recipes.
    pub fn steps(&self) -> Vec<Step> {
        if !self.recipe.is_empty() {
            return self.recipe.clone();
        }
        vec![Step {
            method: if self.method.is_empty() {
                "GET".into()
            } else {
                self.method.clone()
            },
            path: self.path.clone(),
            body_bytes: 0,
        }]
    }

    /// Largest per-request footprint of the scenario in bytes (heap or RSS),
    /// used to keep the default rate inside the target's leak budget.
    pub fn footprint_bytes(&self) -> u64 {
        let body: u64 = self.steps().iter().map(|s| s.body_bytes).sum();
        self.bytes_per_request
            .max(self.rss_bytes_per_request)
            .max(body)
    }

    /// The signal whose slope the scenario's ground truth predicts, and the
    /// truth per triggering request; `None` for classes without a per-request
    /// truth (plateau, rss-retained, the negative controls) or a zero truth.
    pub fn truth(&self) -> Option<(&'static str, f64)> {
        let (signal, per_request) = match self.class.as_str() {
            "retention" => ("allocated", self.bytes_per_request),
            "task-leak" => ("alive_tasks", self.tasks_per_request),
            "off-heap" => ("rss", self.rss_bytes_per_request),
            _ => return None,
        };
        (per_request > 0).then_some((signal, per_request as f64))
    }
}

/// Parses the catalogue JSON (an array of entries).
pub fn parse(json: &str) -> anyhow::Result<Vec<Scenario>> {
    Ok(serde_json::from_str(json)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catalogue_entry_with_extra_and_missing_fields_parses() {
        let json = r#"[{"id":"map-no-shrink","class":"plateau","component":"sessions",
            "recipe":[{"method":"PUT","path":"/sessions/{key}","body_bytes":0},
                      {"method":"DELETE","path":"/sessions/{key}"}],
            "something_new": 1}]"#;
        let cat = parse(json).unwrap();
        assert_eq!(cat[0].steps().len(), 2);
        assert_eq!(cat[0].steps()[1].method, "DELETE");
        assert_eq!(cat[0].truth(), None);
        assert!(!cat[0].negative_control);
    }

    #[test]
    fn truth_follows_the_class_signal() {
        let json = r#"[{"id":"t","class":"task-leak","method":"GET","path":"/x/{key}",
            "bytes_per_request":4640,"tasks_per_request":1,"rss_bytes_per_request":4640}]"#;
        let cat = parse(json).unwrap();
        assert_eq!(cat[0].truth(), Some(("alive_tasks", 1.0)));
        assert_eq!(cat[0].steps()[0].path, "/x/{key}");
        assert_eq!(cat[0].footprint_bytes(), 4640);
    }
}
