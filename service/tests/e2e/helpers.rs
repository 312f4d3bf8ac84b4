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
        let mut child = Command::new(env!("CARGO_BIN_EXE_leaklab-service"))
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("LEAKLAB_LEAKS")
            .env_remove("LEAKLAB_FIXES")
            .env_remove("LEAKLAB_ADMIN_TOKEN")
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

/// Distinct keys for one test run.
pub fn key(run: &str, i: usize) -> String {
    format!("{run}-{i:08}")
}

/// `a` within `pct` percent of `b`.
pub fn within_pct(a: f64, b: f64, pct: f64) -> bool {
    (a - b).abs() <= b.abs() * pct / 100.0
}
