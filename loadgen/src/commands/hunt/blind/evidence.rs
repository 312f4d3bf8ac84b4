//! The blind hunt's reasoning, from run summaries and the public catalogue
//! only (never from which flags are on).
//!
//! - [`route_groups`]: the service's routes as the catalogue's recipes name
//!   them; scenarios sharing a recipe (four share `GET /items/{key}`) form
//!   one group, driven as one in the differential step.
//! - [`candidates`]: from the screening run over every route, the leak
//!   scenarios whose component gauge climbs (or, for the level-shaped
//!   classes, stayed raised), plus every scenario of a class the screen
//!   found and no gauge explained.
//! - [`confirm`]: from one group's own run, the candidates whose gauge climbs
//!   again when only that route is driven (a level-shaped class: whose class
//!   the run's verdict reaches), each with its class, its share of the burn
//!   (split by the catalogue's per-request truth among what climbed in the
//!   same window) and the evidence in words.

use std::collections::BTreeMap;

use leaklab_model::run::{Phase, RunSummary, Sample};
use leaklab_model::{Catalogue, LeakClass, Scenario};

use crate::artifacts::pprof::SiteGrowth;
use crate::human::human_bytes;

/// Scenarios that one recipe triggers.
#[derive(Clone, Debug)]
pub struct Group {
    /// `METHOD path` of each step, joined by ` then `.
    pub route: String,
    pub members: Vec<Scenario>,
}

impl Group {
    /// The scenario whose recipe drives the group: the first leak, else the first.
    pub fn representative(&self) -> &Scenario {
        self.members
            .iter()
            .find(|s| !s.negative_control)
            .unwrap_or(&self.members[0])
    }
}

/// The recipe of `s` as a route label.
pub fn route_of(s: &Scenario) -> String {
    s.recipe
        .iter()
        .map(|step| format!("{} {}", step.method, step.path))
        .collect::<Vec<_>>()
        .join(" then ")
}

/// The catalogue's scenarios grouped by recipe, in catalogue order.
pub fn route_groups(catalogue: &Catalogue) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for s in &catalogue.0 {
        let route = route_of(s);
        match groups.iter_mut().find(|g| g.route == route) {
            Some(g) => g.members.push(s.clone()),
            None => groups.push(Group {
                route,
                members: vec![s.clone()],
            }),
        }
    }
    groups
}

/// Classes that rise once and stay: judged by level, not by slope.
fn level_shaped(class: LeakClass) -> bool {
    matches!(class, LeakClass::Plateau | LeakClass::RssRetained)
}

/// A leak scenario (not a negative control) with a gauge to watch.
fn hunted(s: &Scenario) -> bool {
    !s.negative_control && s.class.is_leak()
}

/// The fit of component gauge `gauge` in `run`.
fn gauge_fit<'a>(run: &'a RunSummary, gauge: &str) -> Option<&'a leaklab_model::run::SignalFit> {
    run.signals.get(&format!("components.{gauge}"))
}

/// Whether `gauge` climbs through the measured window (significant, large,
/// not levelling off).
pub fn gauge_climbs(run: &RunSummary, gauge: &str) -> bool {
    gauge_fit(run, gauge).is_some_and(|f| f.rising)
}

/// Whether `gauge` ends above where it was before the load.
fn gauge_raised(run: &RunSummary, gauge: &str) -> bool {
    gauge_fit(run, gauge).is_some_and(|f| f.last > f.baseline.unwrap_or(f.first).max(0.0))
}

/// A scenario worth a differential window, and why.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub scenario: Scenario,
    pub why: String,
}

/// Heap growth (bytes, since the screen's warm-up) at allocation sites in
/// `source`, and the largest such site.
fn growth_in<'a>(growth: &'a [SiteGrowth], source: &str) -> (i64, Option<&'a SiteGrowth>) {
    if source.is_empty() {
        return (0, None);
    }
    let needle = format!("({source}:");
    let mine: Vec<&SiteGrowth> = growth.iter().filter(|g| g.site.contains(&needle)).collect();
    (
        mine.iter().map(|g| g.growth_bytes.max(0)).sum(),
        mine.into_iter().max_by_key(|g| g.growth_bytes),
    )
}

/// Heap growth a site must show to make its code a suspect.
const MIN_SITE_GROWTH: i64 = 2 << 20;

/// Heap growth at sites no leak scenario owns that makes the scenarios
/// without a gauge of their own suspects.
const UNOWNED_GROWTH: i64 = 32 << 20;

/// The leak scenarios the screening run points at: a climbing gauge, a
/// level gauge that stayed raised, or (retention) allocation sites in its
/// code that grew in the heap-profile diff (`growth`).
pub fn candidates(
    screen: &RunSummary,
    catalogue: &Catalogue,
    growth: &[SiteGrowth],
) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let total: i64 = growth.iter().map(|g| g.growth_bytes.max(0)).sum();
    for s in catalogue.0.iter().filter(|s| hunted(s)) {
        let (grew, top) = growth_in(growth, &s.source);
        let by_heap = (s.class == LeakClass::Retention && grew >= MIN_SITE_GROWTH.max(total / 20))
            .then(|| {
                format!(
                    "the heap profile grew {} at sites in {} (top: {})",
                    human_bytes(grew as f64),
                    s.source,
                    top.map_or("", |t| t.site.as_str())
                )
            });
        let why = if level_shaped(s.class) {
            gauge_raised(screen, &s.gauge)
                .then(|| format!("gauge {} stayed above its pre-load level", s.gauge))
        } else {
            gauge_climbs(screen, &s.gauge).then(|| {
                let slope = gauge_fit(screen, &s.gauge).map_or(0.0, |f| f.slope_per_s);
                format!("gauge {} climbs {slope:.1}/s", s.gauge)
            })
        }
        .or(by_heap);
        if let Some(why) = why {
            out.push(Candidate {
                scenario: s.clone(),
                why,
            });
        }
    }
    // A worker that drains its queue hides the queue's growth below its
    // drain rate, and the mixed screen gives each route a fraction of the
    // load: such a route always gets a window of its own, above its drain.
    for s in catalogue
        .0
        .iter()
        .filter(|s| hunted(s) && s.drain_per_s.is_some())
    {
        if !out.iter().any(|c| c.scenario.id == s.id) {
            out.push(Candidate {
                scenario: s.clone(),
                why: format!(
                    "its worker drains {:.0}/s, more than the screen sent it: tried alone, above that",
                    s.drain_per_s.unwrap_or_default()
                ),
            });
        }
    }
    // Heap growth at sites that no leak scenario's code owns (an inlined
    // frame symbolized to the wrong file, say): the retention scenarios the
    // service exports no gauge for could be behind it, so each gets a window.
    let owned: i64 = catalogue
        .0
        .iter()
        .filter(|s| hunted(s))
        .map(|s| growth_in(growth, &s.source).0)
        .sum();
    let unowned = total - owned;
    if unowned >= UNOWNED_GROWTH.max(total / 5) {
        for s in catalogue.0.iter().filter(|s| {
            hunted(s) && s.class == LeakClass::Retention && gauge_fit(screen, &s.gauge).is_none()
        }) {
            if !out.iter().any(|c| c.scenario.id == s.id) {
                out.push(Candidate {
                    scenario: s.clone(),
                    why: format!(
                        "the heap grew {} at sites no leak's code owns, and it exports no gauge of its own",
                        human_bytes(unowned as f64)
                    ),
                });
            }
        }
    }
    // A class the signals show that no gauge explains: every scenario of
    // that class gets its own window.
    for f in &screen.verdict.findings {
        if !f.class.is_leak() || out.iter().any(|c| c.scenario.class == f.class) {
            continue;
        }
        for s in catalogue
            .0
            .iter()
            .filter(|s| hunted(s) && s.class == f.class)
        {
            out.push(Candidate {
                scenario: s.clone(),
                why: format!(
                    "the screen found {} in {} and no gauge named its owner",
                    f.class, f.signal
                ),
            });
        }
    }
    out
}

/// A scenario the differential step confirmed.
#[derive(Clone, Debug)]
pub struct Confirmed {
    pub scenario: Scenario,
    pub class: LeakClass,
    pub route: String,
    /// The signal the class is read from.
    pub signal: String,
    /// Its own share of the burn in its route's window, bytes/s.
    pub burn_bytes_per_s: f64,
    pub evidence: Vec<String>,
    /// Why this class, in a sentence.
    pub why: String,
}

/// The class's main signal.
fn signal_of(class: LeakClass) -> &'static str {
    match class {
        LeakClass::TaskLeak => "alive_tasks",
        LeakClass::OffHeap | LeakClass::RssRetained | LeakClass::RssGrowth => "rss",
        _ => "allocated",
    }
}

/// Slope of `signal` in `run`, units/s (0 when missing).
fn slope(run: &RunSummary, signal: &str) -> f64 {
    run.signals.get(signal).map_or(0.0, |f| f.slope_per_s)
}

/// The per-request truth a scenario adds to the signal its class reads.
fn truth_per_request(s: &Scenario) -> f64 {
    match s.class {
        LeakClass::OffHeap => s.rss_bytes_per_request as f64,
        _ => s.bytes_per_request as f64,
    }
}

/// Component gauges that held their level through the measured window of
/// `samples`: never zero, never below half their highest reading. Room a
/// structure keeps while its contents come and go (a table's capacity, an
/// arena's unused pages) looks like this; room given back does not.
pub fn held_gauges(samples: &[Sample]) -> Vec<String> {
    let mut range: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for m in samples
        .iter()
        .filter(|s| s.phase == Phase::Measure)
        .filter_map(|s| s.memory.as_ref())
    {
        for (name, &v) in &m.components {
            let r = range.entry(name.as_str()).or_insert((v, v));
            r.0 = r.0.min(v);
            r.1 = r.1.max(v);
        }
    }
    range
        .into_iter()
        // A byte gauge holding a page or two is not a high-water mark.
        .filter(|(name, (min, _))| !name.ends_with("_bytes") || *min >= 1 << 20)
        .filter(|(_, (min, max))| *min > 0 && *min * 2 >= *max)
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// The candidates (of any route) that `run`, which drove `group` alone,
/// confirms, with their share of the burn. `held` are the gauges that held
/// their level through the window ([`held_gauges`]).
pub fn confirm(
    group: &Group,
    candidates: &[Candidate],
    run: &RunSummary,
    held: &[String],
) -> Vec<Confirmed> {
    let rate = run.load.rate_achieved.max(1e-9);
    // Everything whose gauge climbs in this window shares its heap slope,
    // also a middleware leak whose home is another route.
    let present: Vec<&Scenario> = candidates
        .iter()
        .map(|c| &c.scenario)
        .filter(|s| !level_shaped(s.class) && gauge_climbs(run, &s.gauge))
        .collect();
    let mut out = Vec::new();
    for c in candidates
        .iter()
        .filter(|c| route_of(&c.scenario) == group.route)
    {
        let s = &c.scenario;
        let mut evidence = vec![format!("screen: {}", c.why)];
        let (class, why) = if level_shaped(s.class) {
            if let Some(f) = run.verdict.findings.iter().find(|f| f.class == s.class) {
                evidence.push(format!(
                    "{} alone: the verdict is {} ({})",
                    group.route,
                    f.class,
                    run.verdict.reasons.join("; ")
                ));
                (
                    f.class,
                    format!("{} alone reaches {}", group.route, f.class),
                )
            } else if held.contains(&s.gauge) {
                evidence.push(format!(
                    "{} alone: gauge {} held its level through the window while the route's work came and went",
                    group.route, s.gauge
                ));
                (
                    s.class,
                    format!(
                        "the room {} counts is kept after the work that needed it is done",
                        s.gauge
                    ),
                )
            } else {
                continue;
            }
        } else {
            if gauge_fit(run, &s.gauge).is_some() {
                if !gauge_climbs(run, &s.gauge) {
                    continue;
                }
                let per_req = gauge_fit(run, &s.gauge).map_or(0.0, |f| f.slope_per_s) / rate;
                evidence.push(format!(
                    "{} alone at {rate:.0}/s: gauge {} climbs {per_req:.2} per request",
                    group.route, s.gauge
                ));
            } else {
                // No gauge of its own to read (the service does not export
                // one): the heap must rise by at least half of what this
                // code retains per request.
                let per_req = slope(run, signal_of(s.class)) / rate;
                let rises = run.verdict.findings.iter().any(|f| f.class == s.class);
                if !rises || per_req < 0.5 * truth_per_request(s) {
                    continue;
                }
                evidence.push(format!(
                    "{} alone at {rate:.0}/s: {} rises {} per request (this code retains {} per request when it leaks)",
                    group.route,
                    signal_of(s.class),
                    human_bytes(per_req),
                    human_bytes(truth_per_request(s))
                ));
            }
            class_from_signals(run, s)
        };
        let signal = signal_of(class);
        let measured = slope(run, signal_of(s.class));
        let shared: f64 = present
            .iter()
            .filter(|p| signal_of(p.class) == signal_of(s.class))
            .map(|p| truth_per_request(p))
            .sum();
        let share = if shared > 0.0 && present.iter().any(|p| p.id == s.id) {
            truth_per_request(s) / shared
        } else {
            1.0
        };
        let mut burn = match s.class {
            LeakClass::TaskLeak => slope(run, "allocated") * share,
            _ => measured * share,
        };
        if burn <= 0.0 && gauge_climbs(run, &s.gauge) {
            // The signal is below a short window's noise; the gauge counts
            // one entry per request, each worth the catalogue's truth.
            burn = truth_per_request(s) * rate;
            evidence.push(format!(
                "its burn is estimated: {} per request x {rate:.0} requests/s",
                human_bytes(truth_per_request(s))
            ));
        }
        if !level_shaped(s.class) {
            evidence.push(per_request_line(s, run, shared, rate));
        }
        out.push(Confirmed {
            scenario: s.clone(),
            class,
            route: group.route.clone(),
            signal: signal.to_owned(),
            burn_bytes_per_s: burn.max(0.0),
            evidence,
            why,
        });
    }
    out
}

/// The class `run`'s signals give the component of `s`, and why: a
/// verdict finding in its component, else one of its class, else the
/// class its climbing gauge implies (a count that only grows with distinct
/// keys), said as such.
fn class_from_signals(run: &RunSummary, s: &Scenario) -> (LeakClass, String) {
    let findings = &run.verdict.findings;
    let found = findings
        .iter()
        .find(|f| f.component.as_deref() == Some(s.component.as_str()) && f.class.is_leak())
        .or_else(|| findings.iter().find(|f| f.class == s.class));
    match found {
        Some(f) => (
            f.class,
            format!("{} rises ({}/s)", f.signal, signal_rate(run, &f.signal)),
        ),
        None => (
            s.class,
            format!(
                "gauge {} grows with every distinct key while {} is below the noise of a short window",
                s.gauge,
                signal_of(s.class)
            ),
        ),
    }
}

fn signal_rate(run: &RunSummary, signal: &str) -> String {
    let v = slope(run, signal);
    if signal == "alive_tasks" {
        format!("{v:.1}")
    } else {
        human_bytes(v)
    }
}

/// Measured per request against the catalogue's truth for what climbed
/// (`shared`); without a climbing gauge of its own, its own truth.
fn per_request_line(s: &Scenario, run: &RunSummary, shared: f64, rate: f64) -> String {
    let signal = signal_of(s.class);
    let truth = if shared > 0.0 {
        shared
    } else {
        truth_per_request(s)
    };
    let measured = slope(run, signal) / rate;
    let (m, t) = if signal == "alive_tasks" {
        (format!("{measured:.2} tasks"), {
            let tasks = s.tasks_per_request as f64;
            format!("{tasks:.0} task(s)")
        })
    } else {
        (human_bytes(measured), human_bytes(truth))
    };
    format!("{signal} per request: measured {m}, catalogue truth for what climbed {t}")
}

#[cfg(test)]
mod tests {
    use leaklab_model::catalogue::Step;
    use leaklab_model::run::{Finding, SignalFit, Verdict};

    use super::*;

    fn scenario(id: &str, class: LeakClass, path: &str, gauge: &str, bytes: u64) -> Scenario {
        let mut s = Scenario::new(id, class, id, vec![Step::get(path)]);
        s.gauge = gauge.into();
        s.bytes_per_request = bytes;
        s.negative_control = !class.is_leak();
        s
    }

    fn catalogue() -> Catalogue {
        Catalogue(vec![
            scenario(
                "cache",
                LeakClass::Retention,
                "/items/{key}",
                "entries",
                10_000,
            ),
            scenario(
                "labels",
                LeakClass::Retention,
                "/items/{key}",
                "series",
                300,
            ),
            scenario("small", LeakClass::Bounded, "/items/{key}", "entries", 0),
            scenario(
                "orders",
                LeakClass::Retention,
                "/orders/{key}",
                "orders",
                3_000,
            ),
            scenario("arena", LeakClass::RssRetained, "/batch", "unused", 0),
        ])
    }

    fn fit(slope: f64, rising: bool, first: f64, last: f64) -> SignalFit {
        SignalFit {
            slope_per_s: slope,
            ci95: [slope, slope],
            p_value: 0.0,
            first,
            last,
            baseline: Some(0.0),
            n: 40,
            noise: 0.0,
            slope_first_third: slope,
            slope_last_third: slope,
            rising,
        }
    }

    fn run(signals: &[(&str, SignalFit)], findings: Vec<Finding>, rate: f64) -> RunSummary {
        let mut s = RunSummary {
            signals: signals
                .iter()
                .map(|(k, f)| (k.to_string(), f.clone()))
                .collect(),
            verdict: Verdict {
                leak: !findings.is_empty(),
                findings,
                ..Verdict::default()
            },
            ..RunSummary::default()
        };
        s.load.rate_achieved = rate;
        s
    }

    #[test]
    fn groups_share_a_recipe_and_drive_the_first_leak() {
        let groups = route_groups(&catalogue());
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].route, "GET /items/{key}");
        assert_eq!(groups[0].members.len(), 3);
        assert_eq!(groups[0].representative().id, "cache");
    }

    #[test]
    fn a_climbing_gauge_makes_a_candidate_and_a_flat_one_does_not() {
        let screen = run(
            &[
                ("components.series", fit(50.0, true, 0.0, 500.0)),
                ("components.entries", fit(10.0, false, 0.0, 100.0)),
                ("components.unused", fit(0.0, false, 0.0, 0.0)),
            ],
            vec![],
            100.0,
        );
        let c = candidates(&screen, &catalogue(), &[]);
        let ids: Vec<_> = c.iter().map(|c| c.scenario.id.as_str()).collect();
        assert_eq!(ids, ["labels"]);
    }

    #[test]
    fn a_class_no_gauge_explains_tries_every_scenario_of_that_class() {
        let finding = Finding {
            class: LeakClass::Retention,
            signal: "allocated".into(),
            ..Finding::default()
        };
        let c = candidates(&run(&[], vec![finding], 100.0), &catalogue(), &[]);
        let ids: Vec<_> = c.iter().map(|c| c.scenario.id.as_str()).collect();
        assert_eq!(ids, ["cache", "labels", "orders"]);
    }

    #[test]
    fn the_burn_is_split_by_truth_among_what_climbed_in_the_window() {
        let cat = catalogue();
        let cands: Vec<Candidate> = ["cache", "labels"]
            .iter()
            .map(|id| Candidate {
                scenario: cat.find(id).unwrap().clone(),
                why: "test".into(),
            })
            .collect();
        let finding = Finding {
            class: LeakClass::Retention,
            component: Some("cache".into()),
            signal: "allocated".into(),
            ..Finding::default()
        };
        let window = run(
            &[
                ("allocated", fit(1_030_000.0, true, 0.0, 1e7)),
                ("components.entries", fit(100.0, true, 0.0, 1000.0)),
                ("components.series", fit(100.0, true, 0.0, 1000.0)),
            ],
            vec![finding],
            100.0,
        );
        let confirmed = confirm(&route_groups(&cat)[0], &cands, &window, &[]);
        assert_eq!(confirmed.len(), 2);
        let cache = &confirmed[0];
        assert_eq!(cache.class, LeakClass::Retention);
        assert!((cache.burn_bytes_per_s - 1_000_000.0).abs() < 1.0);
        assert!((confirmed[1].burn_bytes_per_s - 30_000.0).abs() < 1.0);
        assert_eq!(confirmed[1].class, LeakClass::Retention);
    }

    #[test]
    fn a_gauge_that_stops_climbing_alone_is_not_confirmed() {
        let cat = catalogue();
        let cands = vec![Candidate {
            scenario: cat.find("orders").unwrap().clone(),
            why: "test".into(),
        }];
        let window = run(
            &[("components.orders", fit(5.0, false, 0.0, 10.0))],
            vec![],
            100.0,
        );
        assert!(confirm(&route_groups(&cat)[1], &cands, &window, &[]).is_empty());
    }

    #[test]
    fn a_gauge_that_never_gives_its_room_back_is_held() {
        let sample = |capacity: u64, len: u64| Sample {
            phase: Phase::Measure,
            memory: Some(leaklab_model::run::TargetMemory {
                components: [("capacity".to_owned(), capacity), ("len".to_owned(), len)]
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
            t: 1.0,
            requests: 0,
            in_flight: 0,
            proc: None,
            cgroup: None,
            metrics: None,
            error: None,
        };
        let kept = [sample(100, 0), sample(100, 90), sample(100, 0)];
        assert_eq!(held_gauges(&kept), ["capacity"]);
        let shrunk = [sample(0, 0), sample(100, 90), sample(0, 0)];
        assert!(held_gauges(&shrunk).is_empty());
    }

    #[test]
    fn a_draining_route_and_unowned_heap_growth_make_their_candidates() {
        let mut cat = catalogue();
        cat.0[3].drain_per_s = Some(20.0);
        cat.0[0].source = "src/cache.rs".into();
        let grew = |site: &str, bytes: i64| SiteGrowth {
            site: site.into(),
            base_bytes: 0,
            end_bytes: bytes,
            growth_bytes: bytes,
        };
        // The gauges of cache and labels are exported (flat); orders' drains.
        let screen = run(
            &[
                ("components.entries", fit(0.0, false, 5.0, 5.0)),
                ("components.series", fit(0.0, false, 5.0, 5.0)),
            ],
            vec![],
            100.0,
        );
        let ids =
            |c: Vec<Candidate>| -> Vec<String> { c.into_iter().map(|c| c.scenario.id).collect() };
        assert_eq!(ids(candidates(&screen, &cat, &[])), ["orders"]);
        // 100 MiB at a site no leak owns: orders (no exported gauge) is tried.
        let unowned = [
            grew("body (src/other.rs:9)", 100 << 20),
            grew("f (src/cache.rs:1)", 1 << 20),
        ];
        assert_eq!(ids(candidates(&screen, &cat, &unowned)), ["orders"]);
        cat.0[3].drain_per_s = None;
        assert_eq!(ids(candidates(&screen, &cat, &unowned)), ["orders"]);
        assert!(candidates(&screen, &cat, &unowned[1..]).is_empty());
    }
}
