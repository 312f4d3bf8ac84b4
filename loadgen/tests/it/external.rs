//! Targets that know nothing of leaklab: small HTTP servers in Python
//! (`tests/servers/keyed.py`, started by the test), one leaky and one
//! bounded, judged from outside through their pid (and their /metrics);
//! and the bad inputs such a target invites, each a usage error (exit 2).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::helpers::loadgen;

/// A keyed.py server, killed when dropped (its stdin closing stops it too).
pub(crate) struct PyServer {
    child: Child,
    pub(crate) url: String,
}

impl PyServer {
    pub(crate) fn start(args: &[&str]) -> PyServer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/servers/keyed.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            // One glibc arena: the server runs a thread per connection, and
            // with an arena per thread its freed 4 KiB values are not reused
            // across threads, so a bounded store's RSS creeps up for minutes
            // (about 100 KiB/s here) instead of levelling as the fixture says.
            .env("MALLOC_ARENA_MAX", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs keyed.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the listening line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        PyServer { child, url }
    }

    pub(crate) fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `loadgen run` against `server` from outside, distinct keys on `/k/{key}`.
fn judge_from_outside(server: &PyServer, extra: &[&str]) -> (i32, Value, String) {
    let pid = server.pid();
    let mut args = vec![
        "run",
        "--target",
        &server.url,
        "--pid",
        &pid,
        "--path",
        "/k/{key}",
        "--rate",
        "300",
        "--duration",
        "22s",
        "--warmup",
        "8s",
        "--json",
    ];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = loadgen(&args);
    let summary = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no summary ({e}); exit {code}; stderr:\n{stderr}"));
    (code, summary, stderr)
}

#[test]
fn a_leaky_service_that_is_not_leaklab_is_called_rss_growth_and_a_bounded_one_is_not() {
    let leaky = PyServer::start(&["--mode", "leak", "--metrics"]);
    let (code, s, stderr) = judge_from_outside(&leaky, &["--metric", "app_cache_entries"]);
    let v = &s["verdict"];
    assert_eq!(code, 3, "{v}\n{stderr}");
    assert_eq!(v["class"], "rss-growth", "{v}");
    assert_eq!(v["findings"][0]["signal"], "rss");
    assert_eq!(v["findings"][0]["gauge"], "app_cache_entries", "{v}");
    assert!(v["reasons"][0]
        .as_str()
        .unwrap()
        .contains("cannot be told apart"));
    assert!(s["signals"]["metrics.app_cache_entries"]["rising"] == true);

    let bounded = PyServer::start(&["--mode", "bounded", "--capacity", "1500"]);
    let (code, s, stderr) = judge_from_outside(&bounded, &[]);
    assert_eq!(code, 0, "{}\n{stderr}", s["verdict"]);
    assert_eq!(s["verdict"]["leak"], false);
}

#[test]
fn bad_input_about_an_outside_target_is_a_usage_error() {
    let server = PyServer::start(&["--mode", "churn", "--metrics"]);
    let url = server.url.as_str();
    let pid = server.pid();
    let not_its_pid = std::process::id().to_string();
    let html = format!("{url}/");
    let metrics = format!("{url}/metrics");
    for (args, says) in [
        (
            vec!["--pid", not_its_pid.as_str(), "--path", "/k/{key}"],
            "does not listen",
        ),
        (
            vec!["--pid", "4194303", "--path", "/k/{key}"],
            "no such running process",
        ),
        (vec!["--pid", pid.as_str(), "--scenario", "churn"], "--path"),
        (vec!["--path", "/k/{key}"], "--pid"),
        (
            vec!["--metrics", html.as_str(), "--path", "/k/{key}"],
            "answers HTML",
        ),
        (
            vec![
                "--metrics",
                metrics.as_str(),
                "--metric",
                "nope",
                "--path",
                "/k/{key}",
            ],
            "no series named nope",
        ),
    ] {
        let mut all = vec!["run", "--target", url, "--duration", "3s", "--warmup", "1s"];
        all.extend(args.iter().copied());
        let (code, _, stderr) = loadgen(&all);
        assert_eq!(code, 2, "{all:?}: {stderr}");
        assert!(
            stderr.contains(says),
            "{all:?} should say {says:?}: {stderr}"
        );
    }
}
