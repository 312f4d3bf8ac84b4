//! Test helpers: start the service binary, send requests, read its memory.
//!
//! Nothing here can hang the suite. Every request has a timeout
//! ([`REQUEST_TIMEOUT`], or [`Service::with_request_timeout`]) and a request
//! that does not answer panics with its method and path. Every service a test
//! starts has a deadline ([`TEST_DEADLINE`], `LEAKLAB_TEST_DEADLINE_S`): a
//! test still holding it then gets its service killed, with its name on
//! stderr, and if it still runs a minute later the test binary aborts.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// How long one request may take before the test fails naming it. Generous:
/// a debug build symbolizing its first heap profile takes seconds.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a test may hold a service (see the module doc).
pub const TEST_DEADLINE: Duration = Duration::from_secs(600);

/// A running `leaklab-service` child process, killed on drop.
pub struct Service {
    child: Child,
    pub base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    token: Option<String>,
    request_timeout: Duration,
    /// Set on drop, so the deadline thread stands down.
    done: Arc<AtomicBool>,
    /// Everything the service wrote to stderr.
    stderr: Arc<std::sync::Mutex<String>>,
}

/// The name of the running test (the test harness names its threads so).
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("(unnamed test)")
        .to_owned()
}

/// Kills the service of a test that ran past its deadline; aborts the test
/// binary if the test still has not ended a minute after that.
fn watch_deadline(pid: u32, done: Arc<AtomicBool>) {
    let test = test_name();
    let deadline = std::env::var("LEAKLAB_TEST_DEADLINE_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(TEST_DEADLINE, Duration::from_secs);
    std::thread::spawn(move || {
        let wait = |d: Duration| {
            let until = Instant::now() + d;
            while Instant::now() < until {
                if done.load(Ordering::Relaxed) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            done.load(Ordering::Relaxed)
        };
        if wait(deadline) {
            return;
        }
        eprintln!("test {test} ran past {deadline:?}: killing its service (pid {pid})");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        if !wait(Duration::from_secs(60)) {
            eprintln!("test {test} still runs a minute after its service was killed: aborting the test binary");
            std::process::abort();
        }
    });
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
            .stderr(Stdio::piped())
            .spawn()
            .expect("start leaklab-service");
        let stderr = Arc::new(std::sync::Mutex::new(String::new()));
        let errors = child.stderr.take().expect("piped stderr");
        let kept = stderr.clone();
        // Passed through to the test's stderr as it comes, and kept for asserts.
        std::thread::spawn(move || {
            use std::io::Write;
            for line in BufReader::new(errors).lines().map_while(Result::ok) {
                let _ = writeln!(std::io::stderr(), "{line}");
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                kept.push_str(&line);
                kept.push('\n');
            }
        });
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
        let done = Arc::new(AtomicBool::new(false));
        watch_deadline(child.id(), done.clone());
        Service {
            child,
            base: base.to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            token,
            request_timeout: REQUEST_TIMEOUT,
            done,
            stderr,
        }
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the service.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Stops the service's process (SIGSTOP) and waits until the kernel says
    /// it is stopped: the signal is asynchronous, and a request sent right
    /// after it could still be answered.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
        let stat = format!("/proc/{}/stat", self.child.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let state = std::fs::read_to_string(&stat).unwrap_or_default();
            // The state letter follows the parenthesised command name.
            if state
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('T')
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("pid {} did not stop within 5 s of SIGSTOP", self.child.id());
    }

    /// Waits up to `within` for the service to exit; its exit code (`None`
    /// when killed by a signal), or `Err` naming how long it was given.
    pub fn wait_exit(&mut self, within: Duration) -> Result<Option<i32>, String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Ok(status.code());
            }
            if Instant::now() >= deadline {
                return Err(format!("the service did not exit within {within:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the service wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        // Let the pass-through thread catch up with a process that just exited.
        std::thread::sleep(Duration::from_millis(100));
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets how long each request may take before the test fails.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Service {
        self.request_timeout = timeout;
        self
    }

    /// Sends one request and reads the whole answer; `Err` when the
    /// connection failed. Panics naming the route when no answer comes in time.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok(Reply { status, body })
        };
        match tokio::time::timeout(self.request_timeout, exchange).await {
            Ok(reply) => reply,
            Err(_) => panic!(
                "{method} {path} did not answer within {:?} (service pid {})",
                self.request_timeout,
                self.child.id()
            ),
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
        let what = format!("{method} {path}");
        self.exchange(method, path, body, headers)
            .await
            .unwrap_or_else(|e| panic!("{what}: request failed: {e}"))
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
        self.exchange(method, path, body, headers).await.ok()
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
        self.done.store(true, Ordering::Relaxed);
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
