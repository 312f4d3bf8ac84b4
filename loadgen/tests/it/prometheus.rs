//! `loadgen judge --prometheus` against a real Prometheus server (the
//! `prometheus` binary of Debian's package) scraping a leaky Python server
//! every second, compared with `loadgen run` on the same leak; and the bad
//! queries a user will type, each a usage error (exit 2).
//!
//! Without a `prometheus` binary on PATH the test says so and returns,
//! unless `LEAKLAB_REQUIRE_PROMETHEUS` is set (CI sets it, after installing
//! the package), in which case it fails.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::external::PyServer;
use crate::helpers::{loadgen, scratch};

/// A Prometheus server on a free loopback port, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a `prometheus` binary is there; fails the test if CI wants one.
fn have_prometheus() -> bool {
    let found = Command::new("prometheus")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("LEAKLAB_REQUIRE_PROMETHEUS").is_none(),
            "LEAKLAB_REQUIRE_PROMETHEUS is set and no prometheus binary is on PATH"
        );
        eprintln!("SKIPPED: no prometheus binary (apt-get install prometheus)");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts Prometheus scraping `target` (`host:port`) every second.
fn start_prometheus(dir: &Path, target: &str) -> Prometheus {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: keyed\n    static_configs:\n      - targets: [\"{target}\"]\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    let p = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let ready = Command::new("python3")
            .args([
                "-c",
                "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)",
                &format!("{}/-/ready", p.url),
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return p;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("prometheus did not become ready at {} within 30 s", p.url);
}

fn slope_and_interval(fit: &Value) -> (f64, f64, f64) {
    (
        fit["slope_per_s"].as_f64().unwrap(),
        fit["ci95"][0].as_f64().unwrap(),
        fit["ci95"][1].as_f64().unwrap(),
    )
}

#[test]
fn judge_prometheus_agrees_with_a_run_on_the_same_leak() {
    if !have_prometheus() {
        return;
    }
    let dir = scratch("prometheus");
    let server = PyServer::start(&["--mode", "leak", "--metrics"]);
    let target = server.url.trim_start_matches("http://").to_owned();
    let prom = start_prometheus(&dir, &target);
    let pid = server.pid();
    let metrics = format!("{}/metrics", server.url);
    let (code, stdout, stderr) = loadgen(&[
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
        "30s",
        "--warmup",
        "6s",
        "--metrics",
        &metrics,
        "--json",
    ]);
    assert_eq!(code, 3, "the run finds the leak; stderr:\n{stderr}");
    let run: Value = serde_json::from_str(&stdout).unwrap();
    let (run_slope, run_lo, run_hi) = slope_and_interval(&run["signals"]["rss"]);

    // The measured part of the run, from Prometheus's series.
    let (code, stdout, stderr) = loadgen(&[
        "judge",
        "--prometheus",
        &prom.url,
        "--query",
        "process_resident_memory_bytes",
        "--since",
        "24s",
        "--step",
        "1s",
    ]);
    assert_eq!(
        code, 3,
        "judge --prometheus calls the leak; stderr:\n{stderr}"
    );
    let judged: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(judged.as_array().unwrap().len(), 1, "{judged}");
    let one = &judged[0];
    assert_eq!(one["verdict"]["class"], "rss-growth", "{one}");
    let (slope, lo, hi) = slope_and_interval(&one["signals"]["rss"]);
    eprintln!(
        "loadgen run: {run_slope:.0} B/s [{run_lo:.0}, {run_hi:.0}]; judge --prometheus: {slope:.0} B/s [{lo:.0}, {hi:.0}]"
    );
    assert!(
        lo <= run_hi && run_lo <= hi,
        "the two slopes' 95% intervals do not overlap: run {run_slope:.0} [{run_lo:.0}, {run_hi:.0}], prometheus {slope:.0} [{lo:.0}, {hi:.0}]"
    );

    // Bad queries: a clear usage error each.
    let (code, _, stderr) = loadgen(&[
        "judge",
        "--prometheus",
        &prom.url,
        "--query",
        "no_such_metric_anywhere",
        "--since",
        "1m",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("matched no series"), "{stderr}");
    let (code, _, stderr) = loadgen(&[
        "judge",
        "--prometheus",
        &prom.url,
        "--query",
        "rate((",
        "--since",
        "1m",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("rejected"), "{stderr}");
    // A URL that is not Prometheus (the Python server's HTML page).
    let (code, _, stderr) = loadgen(&[
        "judge",
        "--prometheus",
        &server.url,
        "--query",
        "up",
        "--since",
        "1m",
    ]);
    assert_eq!(code, 2, "{stderr}");
}
