//! `GET /debug/tasks?mode=await`: a tokio task dump grouped by await point,
//! with counts. Opt-in, and one at a time.
//!
//! **It can wedge the service.** `Handle::dump()` stops every worker and
//! walks every task; under load, a multi-thread runtime's dump can leave a
//! worker spinning in tokio's trace barrier for good, and then the service
//! answers nothing more (`cargo ci soak-tasks --mode await` counts how often).
//! That is a known upstream problem, so the default `/debug/tasks` answer is
//! the [`census`](super::census), which cannot wedge; this dump is an extra.
//!
//! `Handle::dump()` traces every task at its current `.await` (it needs the
//! `tokio_unstable` cfg, set in `.cargo/config.toml`, and tokio's `taskdump` feature).
//! Resolving symbols is the slow part, so at most `limit` tasks (default 2000)
//! are resolved and grouped; the report says how many of how many.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;

use crate::error::AppError;

/// Declares a future wrapper whose `poll` keeps a stack frame of its own.
///
/// A task dump traces from tokio's root frame down to the leaf future a task
/// waits on. In an optimised build the task's own `async fn` is inlined into
/// tokio's root frame and disappears from the trace, so the dump would name
/// only tokio's internals. Spawning `Name(future)` instead of `future` keeps a
/// `<...::Name<F> as Future>::poll` frame, so the dump names the site in any
/// build. Use one name per spawn site that may park (e.g. `FanoutCollector`).
#[macro_export]
macro_rules! dump_frame {
    ($(#[$meta:meta])* $vis:vis $name:ident) => {
        $(#[$meta])*
        $vis struct $name<F>(pub ::std::pin::Pin<Box<F>>);

        impl<F: ::std::future::Future> $name<F> {
            /// Wraps `future` so task dumps name this site.
            pub fn new(future: F) -> Self {
                $name(Box::pin(future))
            }
        }

        impl<F: ::std::future::Future> ::std::future::Future for $name<F> {
            type Output = F::Output;

            #[inline(never)]
            fn poll(
                mut self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<F::Output> {
                $crate::telemetry::tasks::poll_framed(self.0.as_mut(), cx)
            }
        }
    };
}

/// Polls a framed future; kept out of line so the frame survives optimisation.
#[inline(never)]
pub fn poll_framed<F: Future>(future: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
    future.poll(cx)
}

/// One group of tasks parked at the same place.
#[derive(Debug, Serialize)]
pub struct TaskGroup {
    pub count: u64,
    /// The innermost frame of this crate's code in the trace (or the innermost frame).
    pub await_point: String,
    /// The whole trace, as tokio prints it.
    pub trace: String,
}

/// What every await-point dump carries, in its JSON and atop its text.
pub const WARNING: &str = "await-point task dumps stop every tokio worker and can leave a busy \
multi-thread runtime wedged (a known tokio problem); the default /debug/tasks census cannot";

/// The grouped dump.
#[derive(Debug, Serialize)]
pub struct TaskDump {
    pub warning: &'static str,
    pub alive_tasks: u64,
    pub traced: u64,
    pub grouped: u64,
    pub groups: Vec<TaskGroup>,
}

/// Picks the await point out of a trace: the innermost frame in this crate's
/// own code (by symbol or by source path; the dump-frame wrapper itself is
/// skipped), else the innermost frame. Source paths are shown relative to the
/// crate. Optimised builds name inlined frames loosely (`{async_fn#0}`), but
/// their file and line stay exact.
pub fn await_point(trace: &str) -> String {
    let crate_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/");
    let frames: Vec<&str> = trace
        .lines()
        .map(|l| l.trim_start_matches(|c: char| c.is_whitespace() || "│├└─╼".contains(c)))
        .filter(|l| !l.is_empty())
        .collect();
    let own = |l: &&&str| {
        (l.contains("leaklab_service::") || l.contains(crate_dir))
            && !l.contains("telemetry/tasks.rs")
            && !l.contains("telemetry::tasks")
    };
    frames
        .iter()
        .rev()
        .find(own)
        .or_else(|| frames.last())
        .map(|l| l.replace(crate_dir, ""))
        .unwrap_or_else(|| "(empty trace)".to_owned())
}

/// Groups `traces` by await point, largest group first.
pub fn group(traces: impl IntoIterator<Item = String>) -> Vec<TaskGroup> {
    let mut groups: HashMap<String, TaskGroup> = HashMap::new();
    for trace in traces {
        let point = await_point(&trace);
        groups
            .entry(point.clone())
            .and_modify(|g| g.count += 1)
            .or_insert(TaskGroup {
                count: 1,
                await_point: point,
                trace,
            });
    }
    let mut groups: Vec<TaskGroup> = groups.into_values().collect();
    groups.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.await_point.cmp(&b.await_point))
    });
    groups
}

/// Takes a dump of the current runtime, resolving at most `limit` traces.
#[cfg(all(tokio_unstable, target_os = "linux"))]
pub async fn dump(limit: usize) -> Result<TaskDump, AppError> {
    // One dump at a time: two at once double the time every worker is stopped.
    static ONE_AT_A_TIME: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    let _permit = ONE_AT_A_TIME.try_acquire().map_err(|_| {
        AppError::TooManyRequests("an await-point task dump is already running".into())
    })?;
    let handle = tokio::runtime::Handle::current();
    let alive_tasks = handle.metrics().num_alive_tasks() as u64;
    let dump = tokio::time::timeout(Duration::from_secs(20), handle.dump())
        .await
        .map_err(|_| AppError::Unavailable("task dump timed out".into()))?;
    let traced = dump.tasks().iter().count() as u64;
    // Formatting resolves symbols: do it off the runtime's worker threads.
    let groups = tokio::task::spawn_blocking(move || {
        group(
            dump.tasks()
                .iter()
                .take(limit)
                .map(|t| t.trace().to_string()),
        )
    })
    .await
    .map_err(|e| AppError::Internal(anyhow::anyhow!("task dump formatting: {e}")))?;
    let grouped = groups.iter().map(|g| g.count).sum();
    Ok(TaskDump {
        warning: WARNING,
        alive_tasks,
        traced,
        grouped,
        groups,
    })
}

/// Without the cfgs there is no dump to take.
#[cfg(not(all(tokio_unstable, target_os = "linux")))]
pub async fn dump(_limit: usize) -> Result<TaskDump, AppError> {
    let _ = Duration::ZERO;
    Err(AppError::Unavailable(
        "task dumps need RUSTFLAGS=\"--cfg tokio_unstable\" (see .cargo/config.toml) on Linux"
            .into(),
    ))
}

/// Renders the dump as text: one block per group.
pub fn render_text(dump: &TaskDump) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "WARNING: {}\n\nalive tasks: {}, traced: {}, grouped: {}\n\n",
        dump.warning, dump.alive_tasks, dump.traced, dump.grouped
    );
    for g in &dump.groups {
        let _ = writeln!(
            out,
            "{} task(s) at {}\n{}\n",
            g.count, g.await_point, g.trace
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_parked_at_the_same_await_point_form_one_group() {
        let parked = "╼ leaklab_service::components::fanout::collect::{{closure}} at src/components/fanout.rs:10:5\n  └╼ tokio::sync::mpsc::Receiver<T>::recv::{{closure}} at mpsc.rs:1:1";
        let idle = "╼ leaklab_service::app::serve::{{closure}} at src/app.rs:3:3";
        let groups = group([parked.to_owned(), parked.to_owned(), idle.to_owned()]);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].count, 2);
        assert!(groups[0]
            .await_point
            .starts_with("leaklab_service::components::fanout::collect"));
    }
}
