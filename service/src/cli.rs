//! Command-line options and the binary's entry point (`main.rs` is a thin shell).
//!
//! ```text
//! leaklab-service [--addr 127.0.0.1:8080] [--leak ID]... [--fix ID]... [--admin-token T] [--leak-budget 2GiB]
//! leaklab-service scenarios [--json]
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::app::{App, Service};
use crate::catalogue::{self, ScenarioId};
use crate::config::Config;

/// A tokio + axum HTTP API with seeded, calibrated memory leaks that reports its
/// own memory truthfully. Each leak is switched by a flag: `--leak ID` at start,
/// `PUT /admin/flags/{id}` while running, or the Cargo feature `leak-<id>`.
#[derive(Debug, Parser)]
#[command(
    name = "leaklab-service",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeOpts,
}

/// What to do instead of serving.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the leak catalogue with ground truth at the given parameters.
    Scenarios {
        /// A JSON array (docs/catalogue.md) instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        params: Params,
    },
    /// Exit 0 when `GET /healthz` at the address answers 200 (for container
    /// healthchecks in images with no curl), 1 otherwise.
    Healthcheck {
        /// The service to check.
        #[arg(long, env = "LEAKLAB_ADDR", default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
    },
}

/// Options of the server.
#[derive(Debug, Args)]
pub struct ServeOpts {
    /// Address to listen on. Port 0 picks a free port; the chosen address is
    /// printed on stdout as `listening on http://ADDR`.
    #[arg(long, env = "LEAKLAB_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Turn a leak on at start (repeatable, or a comma list in LEAKLAB_LEAKS).
    #[arg(
        long = "leak",
        value_name = "ID",
        env = "LEAKLAB_LEAKS",
        value_delimiter = ','
    )]
    pub leaks: Vec<ScenarioId>,
    /// Turn a leak off at start, e.g. one a `leak-<id>` build feature turned on
    /// (repeatable, or a comma list in LEAKLAB_FIXES).
    #[arg(
        long = "fix",
        value_name = "ID",
        env = "LEAKLAB_FIXES",
        value_delimiter = ','
    )]
    pub fixes: Vec<ScenarioId>,
    /// When set, every /debug/* route and every /admin/* write needs
    /// `Authorization: Bearer <token>`.
    #[arg(long, env = "LEAKLAB_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Bytes any one leaky path may retain before it stops (e.g. 2GiB, 512MiB).
    #[arg(long, env = "LEAKLAB_LEAK_BUDGET", default_value = "2GiB", value_parser = parse_bytes)]
    pub leak_budget: u64,
    /// Whether jemalloc heap-profile sampling is active at start.
    #[arg(long, default_value = "on", value_name = "on|off", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub heap_profiling: bool,
    /// Pin the service's code pages in memory (mlock on fault), so that at a
    /// memory limit the kernel kills it at once instead of letting it thrash
    /// on its own code first. Needs root or CAP_IPC_LOCK. See `loadgen oom`.
    #[arg(long, env = "LEAKLAB_LOCK_CODE", value_name = "on|off", default_value = "off", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub lock_code: bool,
    /// Mystery mode, the capstone's blind hunt: the seed picks 0 to 3 leaks
    /// (sometimes with a negative control beside them) and nothing tells
    /// which: not /admin/flags, /debug/memory, /metrics nor the log. PUT
    /// /admin/flags/{id} still switches one, to try a fix. `loadgen grade
    /// --mystery SEED` reveals the answer.
    #[arg(long, env = "LEAKLAB_MYSTERY", value_name = "SEED", conflicts_with_all = ["leaks", "fixes"])]
    pub mystery: Option<u64>,
    /// How long a graceful shutdown (on SIGTERM or ctrl-c) may take; past it,
    /// or on a second signal, the process exits anyway (exit code 1).
    #[arg(long, env = "LEAKLAB_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_seconds)]
    pub shutdown_timeout: std::time::Duration,
    #[command(flatten)]
    pub params: Params,
}

/// Component parameters that change ground truth.
#[derive(Debug, Args, Clone)]
pub struct Params {
    /// Size of one computed item value.
    #[arg(long, default_value = "10KiB", value_parser = parse_bytes)]
    pub value_bytes: u64,
    /// Capacity of the bounded item cache (the fixed path of unbounded-cache).
    #[arg(long, default_value = "16MiB", value_parser = parse_bytes)]
    pub cache_capacity: u64,
    /// Size of the per-request context a spawned task holds.
    #[arg(long, default_value = "2KiB", value_parser = parse_bytes)]
    pub context_bytes: u64,
}

impl Params {
    /// The configuration these parameters describe.
    pub fn config(&self) -> Config {
        Config {
            value_bytes: self.value_bytes.max(1),
            cache_capacity_bytes: self.cache_capacity,
            context_bytes: self.context_bytes,
            ..Config::default()
        }
    }
}

/// Parses `10KiB`, `2 GiB`, `512MB` or a plain byte count.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("`{s}` is not a byte size like 512MiB or 2GiB: {e}"))
}

/// The scenarios mystery `seed` turns on: its leaks and its decoy, drawn by
/// [`leaklab_model::mystery::draw`] over this catalogue (the same draw
/// `loadgen grade` makes to reveal the answer).
pub fn mystery_draw(seed: u64) -> Vec<ScenarioId> {
    let catalogue = catalogue::catalogue(&Config::default());
    let ids = |leak: bool| -> Vec<&str> {
        catalogue
            .iter()
            .filter(|s| s.class.is_leak() == leak)
            .map(|s| s.id.as_str())
            .collect()
    };
    let mystery = leaklab_model::mystery::draw(seed, &ids(true), &ids(false));
    mystery
        .leaks
        .iter()
        .chain(&mystery.decoys)
        .map(|id| id.parse().expect("the draw picks catalogue ids"))
        .collect()
}

/// Parses `10s`, `1.5s`, `500ms` or plain seconds.
fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let (number, scale) = if let Some(ms) = t.strip_suffix("ms") {
        (ms, 1e-3)
    } else {
        (t.strip_suffix('s').unwrap_or(t), 1.0)
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| std::time::Duration::from_secs_f64(v * scale))
        .ok_or_else(|| format!("`{s}` is not a duration like 10s or 500ms"))
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("expected on or off, not `{s}`")),
    }
}

/// Runs the binary: parses arguments, then serves or prints.
pub fn main() -> ExitCode {
    // `LEAKLAB_LEAKS=` (set but empty, as compose passes an empty knob) means
    // no leak, not one leak with an empty id. Done before any thread starts.
    for var in ["LEAKLAB_LEAKS", "LEAKLAB_FIXES"] {
        if std::env::var_os(var).is_some_and(|v| v.to_string_lossy().trim().is_empty()) {
            std::env::remove_var(var);
        }
    }
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Scenarios { json, params }) => {
            print_scenarios(&params.config(), json);
            ExitCode::SUCCESS
        }
        Some(Command::Healthcheck { addr }) => match healthcheck(addr) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("leaklab-service healthcheck: {addr}: {err}");
                ExitCode::FAILURE
            }
        },
        None => match serve(cli.serve) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("leaklab-service: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `GET /healthz` over a plain socket with a 2 s budget. An unspecified listen
/// address (0.0.0.0) is checked on loopback.
fn healthcheck(addr: SocketAddr) -> std::io::Result<()> {
    use std::io::{Read, Write};
    use std::time::Duration;
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let mut stream = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: healthcheck\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    if head.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "answered {:?}",
            String::from_utf8_lossy(&head)
        )))
    }
}

fn print_scenarios(config: &Config, json: bool) {
    let scenarios = catalogue::catalogue(config);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&scenarios).expect("catalogue serializes")
        );
        return;
    }
    println!(
        "{:<18} {:<13} {:<10} {:<6} {:<18} {:>12} {:>6}",
        "id", "class", "component", "method", "path", "bytes/req", "tasks"
    );
    for s in &scenarios {
        println!(
            "{:<18} {:<13} {:<10} {:<6} {:<18} {:>12} {:>6}",
            s.id,
            s.class.as_str(),
            s.component,
            s.method,
            s.path,
            s.bytes_per_request,
            s.tasks_per_request
        );
    }
}

fn init_tracing() {
    use tracing_subscriber::prelude::*;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colour only on a terminal: logs in files (loadgen's service.log) stay plain.
    // RUST_LOG filters the log only (a per-layer filter): the console layer
    // below must see tokio's task spans whatever RUST_LOG says.
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let registry = tracing_subscriber::registry().with(fmt);
    #[cfg(feature = "console")]
    let registry = registry.with(console_subscriber::spawn());
    registry.init();
}

fn serve(opts: ServeOpts) -> anyhow::Result<()> {
    init_tracing();
    if opts.lock_code {
        // Before the runtime's threads start, so their mappings are covered too.
        match crate::pin::lock_file_mappings() {
            Ok(p) if p.refused == 0 => tracing::info!(
                mappings = p.mappings,
                bytes = p.bytes,
                "code pages pinned (locked on fault)"
            ),
            Ok(p) => tracing::warn!(
                mappings = p.mappings,
                refused = p.refused,
                error = p.first_error.as_deref().unwrap_or(""),
                "some code pages could not be pinned (needs root or CAP_IPC_LOCK)"
            ),
            Err(err) => tracing::warn!(%err, "cannot read /proc/self/maps to pin code pages"),
        }
    }
    let mut config = opts.params.config();
    config.leak_budget_bytes = opts.leak_budget;
    config.heap_profiling = opts.heap_profiling;
    config.mystery = opts.mystery.is_some();
    // Before the runtime: signals must reach the process even if it wedges.
    let stop = crate::shutdown::on_signals(opts.shutdown_timeout)?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    let runtime = crate::telemetry::census::install(builder.enable_all()).build()?;
    runtime.block_on(async move {
        let app = App::new(config, opts.admin_token);
        for id in &opts.leaks {
            app.ctx.flags.set(*id, true);
        }
        for id in &opts.fixes {
            app.ctx.flags.set(*id, false);
        }
        if let Some(seed) = opts.mystery {
            for id in ScenarioId::ALL {
                app.ctx.flags.set(*id, false);
            }
            for id in mystery_draw(seed) {
                app.ctx.flags.set(id, true);
            }
        }
        if let Err(err) = crate::telemetry::heap::set_profiling(app.ctx.config.heap_profiling).await {
            tracing::warn!(%err, "heap profiling unavailable");
        }
        let service = Service::start(opts.addr, app.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", opts.addr))?;
        println!("listening on http://{}", service.addr);
        if let Some(seed) = opts.mystery {
            tracing::info!(addr = %service.addr, pid = std::process::id(), seed, "leaklab-service started in mystery mode: which leaks are on is hidden");
        } else {
            tracing::info!(addr = %service.addr, leaks_on = ?app.ctx.flags.on_ids(), pid = std::process::id(), "leaklab-service started");
        }
        stop.cancelled().await;
        service.stop().await?;
        Ok::<(), anyhow::Error>(())
    })?;
    // Blocking work (a batch job) must not hold the exit up past the deadline.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}
