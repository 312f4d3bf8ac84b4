//! One triggering request's shape: the HTTP steps of a catalogue recipe,
//! prepared once (method parsed, path split around `{key}`, body shared), and
//! which of them run on the n-th triggering request of a run (a step's
//! `every`: 1 on every one, N on every N-th, 0 only on the first).

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Method, Request};
use leaklab_model::{Scenario, Step};

/// One prepared HTTP step: method, path split around `{key}`, shared body.
#[derive(Clone, Debug)]
pub struct PreparedStep {
    method: Method,
    /// Path before `{key}` and, when the template has a key, the part after it.
    pub(super) head: String,
    pub(super) tail: Option<String>,
    /// Sent as is; cloning `Bytes` shares the buffer.
    body: Bytes,
    /// The parsed origin-form URI when the path has no `{key}`.
    origin: Option<hyper::Uri>,
    /// Send the key as `x-leaklab-key` (scenario steps; not plain GETs).
    key_header: bool,
    /// The catalogue step, for its `every` (which requests run it).
    step: Step,
}

/// The request shape of one triggering request (a catalogue recipe).
#[derive(Clone, Debug)]
pub struct Unit {
    pub scenario: Option<String>,
    steps: Vec<PreparedStep>,
}

impl Unit {
    /// From a catalogue entry's recipe.
    pub fn from_scenario(s: &Scenario) -> Result<Unit> {
        let steps = s
            .recipe
            .iter()
            .map(|st| PreparedStep::new(st.clone(), true))
            .collect::<Result<Vec<_>>>()?;
        Ok(Unit {
            scenario: Some(s.id.clone()),
            steps,
        })
    }

    /// The steps triggering request number `nth` of this unit (0-based,
    /// counted per run and per unit) sends, in order: a step with `every: 0`
    /// runs on the first only, `every: N` on every N-th.
    pub(super) fn steps_for(&self, nth: u64) -> impl Iterator<Item = &PreparedStep> {
        self.steps.iter().filter(move |s| s.step.runs_on(nth))
    }

    /// Whether any step needs the key (in its path or as a header).
    pub(super) fn uses_key(&self) -> bool {
        self.steps.iter().any(|s| s.tail.is_some() || s.key_header)
    }

    /// A plain `GET path` (e.g. `/healthz` for benches).
    pub fn get(path: &str) -> Result<Unit> {
        Ok(Unit {
            scenario: None,
            steps: vec![PreparedStep::new(Step::get(path), false)?],
        })
    }
}

impl PreparedStep {
    fn new(step: Step, key_header: bool) -> Result<PreparedStep> {
        let method = Method::from_bytes(step.method.as_bytes())
            .with_context(|| format!("bad method {}", step.method))?;
        let (head, tail) = match step.path.split_once("{key}") {
            Some((h, t)) => (h.to_string(), Some(t.to_string())),
            None => (step.path.clone(), None),
        };
        let origin = if tail.is_none() {
            head.parse().ok()
        } else {
            None
        };
        Ok(PreparedStep {
            method,
            head,
            tail,
            body: Bytes::from(vec![b'x'; step.body_bytes as usize]),
            origin,
            key_header,
            step,
        })
    }

    /// The request for `key`; `base` is empty for origin-form (own
    /// connections) or `http://host:port` for the pooled client.
    pub(super) fn request(
        &self,
        base: &str,
        host: &HeaderValue,
        key: &str,
    ) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = match (&self.origin, base.is_empty()) {
            // Keyless path on an own connection: the URI is parsed once.
            (Some(uri), true) => uri.clone(),
            _ => {
                let mut uri = String::with_capacity(base.len() + self.head.len() + key.len() + 8);
                uri.push_str(base);
                uri.push_str(&self.head);
                if let Some(tail) = &self.tail {
                    uri.push_str(key);
                    uri.push_str(tail);
                }
                // A path built from a catalogue template and our own key is
                // valid; fall back to "/" rather than panic on a hostile catalogue.
                uri.parse().unwrap_or_else(|_| hyper::Uri::from_static("/"))
            }
        };
        let headers = req.headers_mut();
        headers.insert(hyper::header::HOST, host.clone());
        if self.key_header {
            if let Ok(v) = HeaderValue::from_str(key) {
                headers.insert("x-leaklab-key", v);
            }
        }
        req
    }

    /// The path template as the catalogue gives it (`/items/{key}`).
    #[cfg(test)]
    fn template(&self) -> &str {
        &self.step.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_model::LeakClass;

    #[test]
    fn requests_carry_the_key_in_path_and_header() {
        let step = PreparedStep::new(Step::with_body("PUT", "/sessions/{key}/x", 3), true).unwrap();
        let req = step.request(
            "http://127.0.0.1:1",
            &HeaderValue::from_static("127.0.0.1:1"),
            "run-7",
        );
        assert_eq!(req.uri().to_string(), "http://127.0.0.1:1/sessions/run-7/x");
        assert_eq!(req.method(), Method::PUT);
        assert_eq!(req.headers()["x-leaklab-key"], "run-7");
        let plain = PreparedStep::new(Step::with_body("POST", "/batch", 0), false)
            .unwrap()
            .request("", &HeaderValue::from_static("h:1"), "k");
        assert!(plain.headers().get("x-leaklab-key").is_none());
        assert_eq!(plain.uri().to_string(), "/batch");
    }

    #[test]
    fn a_once_per_run_step_is_sent_on_the_first_request_only_and_every_n_on_every_nth() {
        // rss-retained's recipe: one batch job per run, then reads of its state.
        let batch = Scenario::new(
            "rss-retained",
            LeakClass::RssRetained,
            "batch",
            vec![
                Step::with_body("POST", "/batch?job={key}", 0).every(0),
                Step::get("/batch"),
                Step::get("/sometimes/{key}").every(4),
            ],
        );
        let unit = Unit::from_scenario(&batch).unwrap();
        let sent = |template: &str| {
            (0..100)
                .flat_map(|nth| unit.steps_for(nth))
                .filter(|s| s.template() == template)
                .count()
        };
        assert_eq!(sent("/batch?job={key}"), 1);
        assert_eq!(sent("/batch"), 100);
        assert_eq!(sent("/sometimes/{key}"), 25);
        let first: Vec<&str> = unit.steps_for(0).map(|s| s.template()).collect();
        assert_eq!(first, ["/batch?job={key}", "/batch", "/sometimes/{key}"]);
        let second: Vec<&str> = unit.steps_for(1).map(|s| s.template()).collect();
        assert_eq!(second, ["/batch"]);
    }
}
