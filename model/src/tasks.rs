//! `leaklab.tasks/v1`: the service's task census (`GET /debug/tasks`): live
//! tokio tasks grouped by the line that spawned them, with counts and ages.

use serde::{Deserialize, Serialize};

pub const SCHEMA: &str = "leaklab.tasks/v1";

/// One spawn site in the census.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiteRow {
    /// `file:line:column` of the `spawn` call.
    pub site: String,
    /// Tasks from here that have not ended.
    pub alive: u64,
    /// Tasks spawned here since the service started.
    pub spawned: u64,
    /// Of those, how many ended.
    pub finished: u64,
    /// Age of the oldest live task, seconds (0 when none is alive).
    pub oldest_s: f64,
    /// Median age of the live tasks, seconds.
    pub median_age_s: f64,
}

/// The census document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskCensus {
    pub schema: String,
    /// `spawn-hooks` (tokio's runtime task hooks).
    pub source: String,
    /// tokio's own count of alive tasks (includes tasks spawned before the hooks).
    pub alive_tasks: u64,
    /// Live tasks the census knows of (the sum of `sites[].alive`).
    pub tracked: u64,
    /// Most live tasks first.
    pub sites: Vec<SiteRow>,
}

impl TaskCensus {
    /// One line per site that has live tasks, then the sites whose tasks all ended.
    pub fn render_text(&self) -> String {
        use std::fmt::Write;
        let mut out = format!(
            "task census (spawn hooks): {} alive tasks, {} tracked by spawn site\n\n",
            self.alive_tasks, self.tracked
        );
        for s in self.sites.iter().filter(|s| s.alive > 0) {
            let _ = writeln!(
                out,
                "{:>8} alive at {} (spawned {}, finished {}; oldest {:.1} s, median {:.1} s)",
                s.alive, s.site, s.spawned, s.finished, s.oldest_s, s.median_age_s
            );
        }
        let ended: Vec<&SiteRow> = self.sites.iter().filter(|s| s.alive == 0).collect();
        if !ended.is_empty() {
            let _ = writeln!(out, "\nsites whose tasks all ended:");
            for s in ended {
                let _ = writeln!(out, "{:>8} spawned at {}", s.spawned, s.site);
            }
        }
        out
    }
}
