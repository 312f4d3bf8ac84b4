//! Test helpers: start the service binary, send requests, read its memory.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// A running `leaklab-service` child process, killed on drop.
pub struct Service {
    child: Child,
    pub base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    token: Option<String>,
}

/// One response: status and body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Service {
    /// Starts the binary with `args` (plus `--addr 127.0.0.1:0`) and waits for
    /// its `listening on` line.
    pub fn start(args: &[&str]) -> Service {
        Service::start_env(args, &[])
    }

    /// [`Service::start`] with environment variables set for the child.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_leaklab-service"))
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("LEAKLAB_LEAKS")
            .env_remove("LEAKLAB_FIXES")
            .env_remove("LEAKLAB_ADMIN_TOKEN")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start leaklab-service");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        let token = args
            .iter()
            .position(|a| *a == "--admin-token")
            .map(|i| args[i + 1].to_owned());
        Service {
            child,
            base: base.to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            token,
        }
    }

    /// Sends a request with an optional body and extra headers.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .expect("valid request");
        let response = self.client.request(request).await.expect("request sent");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body read")
            .to_bytes();
        Reply { status, body }
    }

    /// Like [`Service::send`], but `None` when the connection failed (e.g. the
    /// server refused an oversized body by closing it).
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Option<Reply> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(Bytes::from(body))).ok()?;
        let response = self.client.request(request).await.ok()?;
        let status = response.status();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some(Reply { status, body })
    }

    /// A request carrying the admin token, when the service has one.
    pub async fn admin(&self, method: Method, path: &str, body: Vec<u8>) -> Reply {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(auth) = auth.as_deref() {
            headers.push(("authorization", auth));
        }
        self.send(method, path, body, &headers).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, Vec::new(), &[]).await
    }

    /// `/debug/memory` as JSON.
    pub async fn memory(&self) -> Value {
        let reply = self.admin(Method::GET, "/debug/memory", Vec::new()).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "/debug/memory: {:?}",
            reply.body
        );
        reply.json()
    }

    /// One numeric field of `/debug/memory` (a `/`-separated path, e.g. `components/cache_entries`).
    pub async fn number(&self, path: &str) -> i64 {
        let memory = self.memory().await;
        memory
            .pointer(&format!("/{path}"))
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("no number at {path}"))
    }

    /// Sets a leak flag through the admin API.
    pub async fn set_flag(&self, id: &str, enabled: bool) {
        let body = serde_json::to_vec(&serde_json::json!({ "enabled": enabled })).unwrap();
        let reply = self
            .admin(Method::PUT, &format!("/admin/flags/{id}"), body)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "set flag {id}: {:?}",
            reply.body
        );
    }

    /// Drives `n` requests, `concurrency` at a time; `make(i)` builds request i
    /// (method, path, body). Panics on any non-success status.
    pub async fn drive<F>(&self, n: usize, concurrency: usize, make: F)
    where
        F: Fn(usize) -> (Method, String, Vec<u8>),
    {
        use futures_util::stream::{self, StreamExt};
        stream::iter(0..n)
            .map(|i| {
                let (method, path, body) = make(i);
                async move {
                    let reply = self.send(method, &path, body, &[]).await;
                    assert!(
                        reply.status.is_success(),
                        "{path}: {} {:?}",
                        reply.status,
                        reply.body
                    );
                }
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<()>>()
            .await;
    }

    /// The catalogue entry of scenario `id`, as the service reports it
    /// (`GET /admin/scenarios`): ground truth, recipe, gauge.
    pub async fn scenario(&self, id: &str) -> Value {
        let catalogue = self.get("/admin/scenarios").await.json();
        catalogue
            .as_array()
            .expect("the catalogue is an array")
            .iter()
            .find(|s| s["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not in the catalogue"))
    }

    /// `/debug/memory` once `allocated` has settled: two readings in a row
    /// within `tolerance` bytes of each other (or `within` passed).
    pub async fn settled_memory(&self, within: Duration, tolerance: i64) -> Value {
        let last = std::cell::Cell::new(i64::MIN / 2);
        self.await_memory(within, |m| {
            let now = m["allocated"].as_i64().expect("allocated");
            (now - last.replace(now)).abs() <= tolerance
        })
        .await
    }

    /// Polls `/debug/memory` until `pred` holds or `within` passes; returns the
    /// last document. Used to await an effect (e.g. tasks ending), never to sleep blindly.
    pub async fn await_memory(&self, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let memory = self.memory().await;
            if pred(&memory) || Instant::now() >= deadline {
                return memory;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Request `key` of a catalogue recipe step (as loadgen sends it): `{key}`
/// replaced in the path, `body_bytes` opaque bytes as the body.
pub fn recipe_request(step: &Value, key: &str) -> (Method, String, Vec<u8>) {
    let method = step["method"].as_str().expect("step method");
    let path = step["path"].as_str().expect("step path");
    let body_bytes = step["body_bytes"].as_u64().unwrap_or(0) as usize;
    (
        Method::from_bytes(method.as_bytes()).expect("a valid method"),
        path.replace("{key}", key),
        (0..body_bytes).map(|i| (i * 131 % 251) as u8).collect(),
    )
}

/// How much the number at `pointer` (e.g. `/allocated`, `/components/queue_depth`)
/// of two `/debug/memory` documents grew from `before` to `after`.
pub fn delta(before: &Value, after: &Value, pointer: &str) -> i64 {
    let read = |m: &Value| {
        m.pointer(pointer)
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("no number at {pointer}"))
    };
    read(after) - read(before)
}

/// Distinct keys for one test run.
pub fn key(run: &str, i: usize) -> String {
    format!("{run}-{i:08}")
}

/// `a` within `pct` percent of `b`.
pub fn within_pct(a: f64, b: f64, pct: f64) -> bool {
    (a - b).abs() <= b.abs() * pct / 100.0
}

/// What driving one scenario's first recipe step did between two settled readings.
pub struct RecipeRun {
    pub svc: Service,
    pub step: Value,
    /// The scenario's `bytes_per_request` ground truth.
    pub truth: f64,
    pub before: Value,
    pub after: Value,
}

/// Starts the service with `id`'s leak on or off, drives `warmup` then `n`
/// distinct-key requests (`key(prefix, i)`) of the scenario's first recipe
/// step, `concurrency` at a time, and reads settled memory before and after.
pub async fn recipe_run(
    id: &str,
    leak: bool,
    prefix: &str,
    warmup: usize,
    n: usize,
    concurrency: usize,
) -> RecipeRun {
    let args: &[&str] = if leak { &["--leak", id] } else { &[] };
    let svc = Service::start(args);
    let scenario = svc.scenario(id).await;
    let truth = scenario["bytes_per_request"].as_f64().unwrap();
    let step = scenario["recipe"][0].clone();
    let request = |i: usize| recipe_request(&step, &key(prefix, i));
    svc.drive(warmup, concurrency, request).await;
    let before = svc.settled_memory(Duration::from_secs(5), 64 << 10).await;
    svc.drive(n, concurrency, |i| request(warmup + i)).await;
    let after = svc.settled_memory(Duration::from_secs(5), 64 << 10).await;
    RecipeRun {
        svc,
        step,
        truth,
        before,
        after,
    }
}
