//! The task census: live tokio tasks grouped by the line that spawned them,
//! with counts and ages. `GET /debug/tasks` answers from it by default.
//!
//! tokio's runtime hooks (`on_task_spawn`, `on_task_terminate`, with
//! `TaskMeta::spawned_at`; they need the `tokio_unstable` cfg set in
//! `.cargo/config.toml`) record each task as it starts and forget it as it
//! ends. Reading the census only locks a few small maps: unlike an
//! await-point dump (`Handle::dump`, which stops every worker and walks every
//! task), it cannot wedge the runtime, so it is always on and safe to ask for
//! under load. "9000 alive at service/src/components/fanout.rs:153, none
//! finished, oldest 45 s" is what a task leak looks like here.
//!
//! Memory: one entry per live task (a location pointer and an instant) and
//! one counter pair per spawn site; both are bounded by what the runtime
//! itself holds.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::panic::Location;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use leaklab_model::tasks::{SiteRow, TaskCensus as CensusReport, SCHEMA};

/// Shards, so spawns on different workers rarely meet on one lock.
const SHARDS: usize = 16;

/// Where a task was spawned: the caller of `tokio::spawn` (tokio tracks it).
type Site = &'static Location<'static>;

/// One live task: where it came from and when.
struct Live {
    site: Site,
    born: Instant,
}

/// Tasks spawned and finished at one site (within one shard).
#[derive(Default, Clone, Copy)]
struct Counts {
    spawned: u64,
    finished: u64,
}

#[derive(Default)]
struct Shard {
    /// Live tasks by tokio's task id; an entry leaves when its task ends.
    live: HashMap<tokio::task::Id, Live>,
    /// Per-site totals; one entry per spawn site in the code, so it stays small.
    sites: HashMap<Site, Counts>,
}

/// The census itself: tasks by id in shards, counts per site.
pub struct TaskCensus {
    /// `std::sync::Mutex`: the hooks run on the runtime's threads, outside
    /// any async context, and hold the lock for one map operation.
    shards: Vec<Mutex<Shard>>,
    hasher: std::collections::hash_map::RandomState,
}

impl TaskCensus {
    fn new() -> TaskCensus {
        TaskCensus {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
        }
    }

    fn shard(&self, id: tokio::task::Id) -> &Mutex<Shard> {
        &self.shards[self.hasher.hash_one(id) as usize % SHARDS]
    }

    /// Records a task that starts now.
    pub fn spawned(&self, id: tokio::task::Id, site: Site) {
        let mut shard = self.shard(id).lock().unwrap_or_else(|e| e.into_inner());
        shard.live.insert(
            id,
            Live {
                site,
                born: Instant::now(),
            },
        );
        shard.sites.entry(site).or_default().spawned += 1;
    }

    /// Forgets a task that ended (completed, panicked or was aborted).
    pub fn terminated(&self, id: tokio::task::Id) {
        let mut shard = self.shard(id).lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = shard.live.remove(&id) {
            shard.sites.entry(live.site).or_default().finished += 1;
        }
    }

    /// Reads the census now: one row per spawn site, most live tasks first.
    pub fn report(&self, alive_tasks: u64) -> CensusReport {
        // CensusReport is leaklab_model's TaskCensus (schema leaklab.tasks/v1).
        let now = Instant::now();
        let mut by_site: HashMap<Site, (Counts, Vec<f64>)> = HashMap::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (site, counts) in &shard.sites {
                let row = by_site.entry(site).or_default();
                row.0.spawned += counts.spawned;
                row.0.finished += counts.finished;
            }
            for live in shard.live.values() {
                let age = now.duration_since(live.born).as_secs_f64();
                by_site.entry(live.site).or_default().1.push(age);
            }
        }
        let mut sites: Vec<SiteRow> = by_site
            .into_iter()
            .map(|(site, (counts, mut ages))| SiteRow {
                site: site_name(site),
                alive: ages.len() as u64,
                spawned: counts.spawned,
                finished: counts.finished,
                oldest_s: ages.iter().copied().fold(0.0, f64::max),
                median_age_s: median(&mut ages),
            })
            .collect();
        sites.sort_by(|a, b| {
            b.alive
                .cmp(&a.alive)
                .then(b.spawned.cmp(&a.spawned))
                .then_with(|| a.site.cmp(&b.site))
        });
        CensusReport {
            schema: SCHEMA.to_owned(),
            source: "spawn-hooks".to_owned(),
            alive_tasks,
            tracked: sites.iter().map(|s| s.alive).sum(),
            sites,
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mid = values.len() / 2;
    let (_, m, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    *m
}

/// `file:line:column`, with a dependency's registry prefix cut to
/// `crate-version/...` (workspace files are already relative to the workspace).
fn site_name(site: Site) -> String {
    let file = site.file();
    let file = match file.find("/registry/src/") {
        Some(at) => {
            let rest = &file[at + "/registry/src/".len()..];
            rest.split_once('/').map_or(rest, |(_, tail)| tail)
        }
        None => file,
    };
    format!("{file}:{}:{}", site.line(), site.column())
}

static CENSUS: OnceLock<TaskCensus> = OnceLock::new();

/// The process's census, once [`install`] put its hooks on a runtime.
pub fn get() -> Option<&'static TaskCensus> {
    CENSUS.get()
}

/// Puts the census hooks on a runtime being built. Every task the runtime
/// spawns from then on is counted.
#[cfg(tokio_unstable)]
pub fn install(builder: &mut tokio::runtime::Builder) -> &mut tokio::runtime::Builder {
    let census = CENSUS.get_or_init(TaskCensus::new);
    builder
        .on_task_spawn(move |meta| census.spawned(meta.id(), meta.spawned_at()))
        .on_task_terminate(move |meta| census.terminated(meta.id()))
}

/// Without `tokio_unstable` there are no task hooks: the census stays empty
/// and `/debug/tasks` says why.
#[cfg(not(tokio_unstable))]
pub fn install(builder: &mut tokio::runtime::Builder) -> &mut tokio::runtime::Builder {
    builder
}

#[cfg(all(test, tokio_unstable))]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        install(builder.worker_threads(2).enable_all())
            .build()
            .unwrap()
    }

    #[test]
    fn parked_tasks_are_grouped_at_their_spawn_line_and_finished_ones_leave() {
        let rt = runtime();
        let census = get().unwrap();
        let (stop, parked_line) = rt.block_on(async {
            let stop = tokio_util::sync::CancellationToken::new();
            let parked_line = line!() + 3;
            for _ in 0..50 {
                let stop = stop.clone();
                tokio::spawn(async move { stop.cancelled().await });
            }
            for _ in 0..20 {
                tokio::spawn(async {}).await.unwrap();
            }
            // A task's end reaches its JoinHandle just before the terminate hook runs.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            (stop, parked_line)
        });
        let report = census.report(0);
        let parked = report
            .sites
            .iter()
            .find(|s| s.site.contains(&format!("census.rs:{parked_line}:")))
            .unwrap_or_else(|| panic!("no parked site in {:#?}", report.sites));
        assert_eq!((parked.alive, parked.finished), (50, 0));
        assert!(parked.oldest_s >= parked.median_age_s);
        let done = report
            .sites
            .iter()
            .find(|s| s.spawned >= 20 && s.alive == 0 && s.site.contains("census.rs"))
            .expect("the awaited tasks' site");
        assert_eq!(done.finished, done.spawned);
        assert_eq!(report.sites[0].site, parked.site, "most alive first");

        stop.cancel();
        rt.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(100)).await });
        let after = census.report(0);
        let parked = after.sites.iter().find(|s| s.site == parked.site).unwrap();
        assert_eq!((parked.alive, parked.finished), (0, 50));
        assert!(after.render_text().contains("sites whose tasks all ended"));
    }

    #[test]
    fn registry_paths_are_cut_to_the_crate() {
        #[track_caller]
        fn here() -> Site {
            Location::caller()
        }
        let name = site_name(here());
        assert!(
            name.starts_with("service/src/telemetry/census.rs:"),
            "{name}"
        );
        let mut ages = vec![3.0, 1.0, 2.0];
        assert_eq!(median(&mut ages), 2.0);
        assert_eq!(median(&mut []), 0.0);
    }
}
