//! Stopping the process, always: signals handled on a thread of their own,
//! a graceful shutdown with a deadline, and a forced exit past it.
//!
//! tokio's signal streams need the runtime's driver to run. A runtime that is
//! wedged (a worker stuck in a task dump, a blocking call on a worker) never
//! sees SIGTERM, and only SIGKILL would end it. So the signals are read by a
//! plain OS thread: the first SIGTERM or ctrl-c cancels the returned token
//! (the graceful shutdown: stop accepting, let requests finish, stop
//! background tasks); a second signal, or the deadline passing, ends the
//! process at once with exit code 1 and a line on stderr saying why.

use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tokio_util::sync::CancellationToken;

/// Exit code of a forced exit (a graceful shutdown that did not finish).
pub const FORCED_EXIT: i32 = 1;

/// Starts the signal thread. The token is cancelled on the first SIGTERM or
/// SIGINT; from then on the process has `deadline` to end by itself.
pub fn on_signals(deadline: Duration) -> std::io::Result<CancellationToken> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    std::thread::Builder::new()
        .name("leaklab-signals".into())
        .spawn(move || {
            let Some(first) = signals.forever().next() else {
                return;
            };
            tracing::info!(
                signal = signal_name(first),
                deadline_s = deadline.as_secs_f64(),
                "shutting down"
            );
            cancel.cancel();
            let started = Instant::now();
            while started.elapsed() < deadline {
                if let Some(second) = signals.pending().next() {
                    force_exit(&format!(
                        "a second {} during shutdown: exiting now",
                        signal_name(second)
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            force_exit(&format!(
                "graceful shutdown did not finish within {:.0?}: exiting anyway",
                deadline
            ));
        })?;
    Ok(token)
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "signal",
    }
}

/// Says why and ends the process without running anything else: the runtime
/// and whatever holds its locks may be stuck.
fn force_exit(why: &str) -> ! {
    eprintln!("leaklab-service: {why}");
    // SAFETY: _exit ends the process; nothing runs after it.
    unsafe { libc::_exit(FORCED_EXIT) }
}
