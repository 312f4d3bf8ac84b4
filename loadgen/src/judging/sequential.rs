//! The sequential test behind `loadgen run --until-verdict`: after warm-up
//! the evidence is looked at once a second, and the run may stop at any look,
//! so the error rate has to hold over every look at once, not at each one.
//!
//! The statistic is a **confidence sequence on the slope** of each watched
//! signal (`allocated`, `alive_tasks`, RSS outside the allocator), made by **alpha spending**:
//! look *k* gets its own share `α_k` of the error budget and builds Sen's
//! interval for the Theil–Sen slope at that level (one-sided, from the ranks
//! of the pair slopes: the test-inversion of Kendall's S, the same interval
//! the fixed window reports at 95%). The shares add up to at most the budget
//! whatever the number of looks, so by the union bound the probability that
//! *any* look's interval misses the true slope on a side is at most that
//! side's budget: the intervals form a confidence sequence, and stopping at
//! any look on any rule keeps its guarantee. The budget is spent over the
//! run's maximum measurement time by the Lan–DeMets Pocock-type function
//! `F(u) = ln(1 + (e − 1) u)` (`u` the share of the maximum elapsed), which
//! spends a little more early, where loud leaks are decided; a look spends
//! what accrued since the one before, so skipped or late looks cost nothing.
//! Reading a plain p-value every second would instead let the false-alarm
//! rate grow with the number of looks (the tests below show by how much).
//!
//! The model behind the guarantee is the fixed window's: the residuals
//! around a line are exchangeable (Sen's interval needs nothing more, no
//! noise distribution). No crate implements confidence sequences for a
//! regression slope, so this builds on [`super::stats`] (pair slopes) and
//! `statrs` (the normal quantile).
//!
//! Two calls, each from its own budget of [`ALPHA`], split evenly over the
//! watched signals:
//!
//! - **climb** (a leak): some signal's lower bound is above zero and at
//!   least the practical rate, the slope at which the whole maximum window
//!   would grow by the fixed window's floor (1 MiB or 16 counts; the same
//!   line the flat call tests against, so a slope is called on whichever
//!   side of it it is shown to be); the growth that lower bound implies over
//!   the window so far stands out of the noise (four times the noise around
//!   the fit, and 1.5 times the largest fall back the signal showed in the
//!   second half of the warm-up or in the window, so churn is not called on
//!   one rising tooth); and the climb persists (the most recent
//!   half of the window rises at least [`PERSIST`] of the whole window's
//!   slope, so a fill that stopped is not called). These vetoes only make a
//!   call rarer, so the error bound holds for the call.
//! - **flat** (decisively no climb): every signal's upper bound is below the
//!   slope at which the whole maximum window would grow by its practical
//!   floor: even the full run could not call that a climb.
//!
//! A structure that is still filling when measurement starts climbs like a
//! leak until it is full; no test can tell from the past alone that it will
//! stop. The persistence rule catches a fill that ends in the window; one
//! that ends well after a call is made is called (the fixed window has the
//! same limit, at its own length). The run's verdict is never this test's:
//! the judge over the samples taken must agree before the run stops
//! (`super::stopping`).

use super::signals::Kind;
use super::stats::{mad_sigma, median_of_sorted, pair_slopes, thin, upper_normal_quantile};

/// The error budget of each call (a climb, a flat), over every look and
/// every watched signal together.
pub const ALPHA: f64 = 0.01;
/// The budget is split evenly over this many signals (`allocated`,
/// `alive_tasks`, RSS), also when fewer are present (conservative).
pub const SIGNALS: usize = 3;
/// No call before this much measurement.
pub const MIN_SPAN_S: f64 = 2.0;
/// Fewer points than this make no interval.
const MIN_POINTS: usize = 8;
/// Points per signal at a look at most (the pair slopes are O(n²)).
const MAX_POINTS: usize = 480;
/// The most recent half of the window must rise at least this share of the
/// whole window's slope for a climb to be called.
pub const PERSIST: f64 = 0.5;
/// A climb must grow at least this many times the noise around its fit...
const NOISE_TIMES: f64 = 4.0;
/// ... and this many times the largest fall back the signal showed.
const FALL_BACK_TIMES: f64 = 1.5;

/// One watched signal at a look: its measured points so far (`x` in seconds
/// since the end of warm-up) and the noise seen in its warm-up.
#[derive(Clone, Copy, Debug)]
pub struct Watched<'a> {
    pub name: &'a str,
    pub kind: Kind,
    pub x: &'a [f64],
    pub y: &'a [f64],
    /// [`warmup_noise`] of the signal (0 when there was no warm-up).
    pub warmup_noise: f64,
}

/// What a look decided. A climb names the first climbing signal in the
/// order they were given.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// This signal climbs: a leak call.
    Climb { signal: String },
    /// Every watched signal is decisively flat: no climb.
    Flat,
}

/// One signal at one look.
#[derive(Clone, Debug)]
pub struct SignalLook {
    pub name: String,
    /// Points used.
    pub n: usize,
    /// Theil–Sen slope, per second.
    pub slope: f64,
    /// The confidence sequence at this look: `[lower, upper]` (infinite
    /// where the points cannot bound it yet).
    pub lower: f64,
    pub upper: f64,
    /// The slope below which this signal counts as flat.
    pub flat_below: f64,
    /// How far to a climb call, 0 to 1 (1: called).
    pub leak_evidence: f64,
    /// How far to a flat call, 0 to 1.
    pub flat_evidence: f64,
    /// The climb call holds for this signal (bound, growth and persistence).
    pub climbing: bool,
    /// The upper bound is below `flat_below`.
    pub flat: bool,
}

/// One look at the evidence.
#[derive(Clone, Debug)]
pub struct Look {
    /// Seconds since the end of warm-up.
    pub at_s: f64,
    /// The error level of this look's intervals, per signal and side.
    pub alpha: f64,
    /// The one-sided critical value for `alpha`.
    pub z: f64,
    pub signals: Vec<SignalLook>,
    pub decision: Option<Decision>,
}

impl Look {
    /// The signal closest to a climb call (the first of equals), and how close.
    pub fn leak_evidence(&self) -> Option<(&str, f64)> {
        self.signals
            .iter()
            .fold(None::<&SignalLook>, |best, s| match best {
                Some(b) if b.leak_evidence >= s.leak_evidence => Some(b),
                _ => Some(s),
            })
            .map(|s| (s.name.as_str(), s.leak_evidence))
    }

    /// How close to a flat call (the least flat signal's evidence; 0 before
    /// any signal has enough points).
    pub fn flat_evidence(&self) -> f64 {
        self.signals
            .iter()
            .map(|s| s.flat_evidence)
            .reduce(f64::min)
            .unwrap_or(0.0)
    }
}

/// The share of the budget spent once a share `u` of the maximum
/// measurement time has passed (Lan–DeMets, Pocock type): 0 at 0, 1 at 1.
pub fn spending(u: f64) -> f64 {
    (1.0 + (std::f64::consts::E - 1.0) * u.clamp(0.0, 1.0)).ln()
}

/// The sequential test's state: how much of the budget earlier looks spent.
#[derive(Clone, Debug)]
pub struct SequentialTest {
    alpha: f64,
    /// The maximum measurement time (`--duration` minus the warm-up).
    horizon_s: f64,
    /// `spending(u)` at the last look that spent.
    spent: f64,
    looks: u32,
}

impl SequentialTest {
    /// A test over at most `horizon_s` seconds of measurement, budget [`ALPHA`].
    pub fn new(horizon_s: f64) -> SequentialTest {
        SequentialTest::with_alpha(horizon_s, ALPHA)
    }

    pub fn with_alpha(horizon_s: f64, alpha: f64) -> SequentialTest {
        SequentialTest {
            alpha,
            horizon_s: horizon_s.max(MIN_SPAN_S),
            spent: 0.0,
            looks: 0,
        }
    }

    /// Looks that spent budget so far.
    pub fn looks(&self) -> u32 {
        self.looks
    }

    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Looks at the watched signals `at_s` seconds after warm-up. Before
    /// [`MIN_SPAN_S`], or with no signal of enough points, the look spends
    /// nothing (the share accrues to the next one) and decides nothing.
    pub fn look(&mut self, at_s: f64, watched: &[Watched]) -> Look {
        let ready = at_s >= MIN_SPAN_S
            && watched
                .iter()
                .any(|w| w.x.len().min(w.y.len()) >= MIN_POINTS);
        let now = spending(at_s / self.horizon_s);
        let alpha = if ready {
            self.alpha / SIGNALS as f64 * (now - self.spent).max(0.0)
        } else {
            0.0
        };
        let z = if alpha > 0.0 {
            upper_normal_quantile(alpha)
        } else {
            f64::INFINITY
        };
        if ready {
            self.spent = now;
            self.looks += 1;
        }
        let signals: Vec<SignalLook> = watched
            .iter()
            .filter_map(|w| signal_look(w, z, self.horizon_s))
            .collect();
        let decision = if !ready {
            None
        } else if let Some(s) = signals.iter().find(|s| s.climbing) {
            Some(Decision::Climb {
                signal: s.name.clone(),
            })
        } else if !signals.is_empty() && signals.iter().all(|s| s.flat) {
            Some(Decision::Flat)
        } else {
            None
        };
        Look {
            at_s,
            alpha,
            z,
            signals,
            decision,
        }
    }
}

/// How far a signal fell back on its own during the second half of the
/// warm-up (`y`: the warm-up's values in time order): its largest drawdown.
/// A churning signal shows its teeth here before a single one is measured;
/// a leak or a full structure falls back by its noise only.
pub fn warmup_noise(y: &[f64]) -> f64 {
    let n = y.len();
    if n < 2 * MIN_POINTS {
        return 0.0;
    }
    drawdown(&y[n / 2..])
}

/// The largest fall from a value to a later one.
fn drawdown(y: &[f64]) -> f64 {
    let mut peak = f64::NEG_INFINITY;
    let mut worst: f64 = 0.0;
    for v in y {
        peak = peak.max(*v);
        worst = worst.max(peak - v);
    }
    worst
}

/// Sen's bounds from sorted pair slopes, `c` = z × sd(Kendall's S): the
/// slopes at ranks (M − c)/2 and (M + c)/2, infinite past either end.
fn sen_bounds(slopes: &[f64], c: f64) -> (f64, f64) {
    let m = slopes.len() as f64;
    let lo = ((m - c) / 2.0).floor();
    let hi = ((m + c) / 2.0).ceil();
    let lower = if lo < 0.0 || !lo.is_finite() {
        f64::NEG_INFINITY
    } else {
        slopes[lo as usize]
    };
    let upper = if hi > m - 1.0 || !hi.is_finite() {
        f64::INFINITY
    } else {
        slopes[hi as usize]
    };
    (lower, upper)
}

/// One signal's interval at critical value `z`, and the two calls on it.
fn signal_look(w: &Watched, z: f64, horizon_s: f64) -> Option<SignalLook> {
    let keep = thin(w.x.len().min(w.y.len()), MAX_POINTS);
    let x: Vec<f64> = keep.iter().map(|&i| w.x[i]).collect();
    let y: Vec<f64> = keep.iter().map(|&i| w.y[i]).collect();
    let n = x.len();
    if n < MIN_POINTS {
        return None;
    }
    let slopes = pair_slopes(&x, &y);
    if slopes.is_empty() {
        return None;
    }
    let (m, nf) = (slopes.len() as f64, n as f64);
    // c = z · sd(S) with S = Kendall's statistic of the points against time.
    let c = z * (nf * (nf - 1.0) * (2.0 * nf + 5.0) / 18.0).sqrt();
    let (lower, upper) = sen_bounds(&slopes, c);
    let slope = median_of_sorted(&slopes);
    let span = x[n - 1] - x[0];
    // S for slope 0 (pairs rising minus the rest) and for the flat line.
    let rising = (slopes.len() - slopes.partition_point(|s| *s <= 0.0)) as f64;
    let flat_below = w.kind.min_growth() / horizon_s;
    let under = slopes.partition_point(|s| *s < flat_below) as f64;
    let residuals: Vec<f64> = x.iter().zip(&y).map(|(x, y)| y - slope * x).collect();
    // Growth must stand out of the noise around the fit and of the largest
    // fall back seen, in the warm-up or in the window.
    let fall_back = drawdown(&y).max(w.warmup_noise);
    let noise_floor = (NOISE_TIMES * mad_sigma(&residuals))
        .max(FALL_BACK_TIMES * fall_back)
        .max(f64::MIN_POSITIVE);
    // The practical floor is a rate: the slope at which the whole maximum
    // window grows by the fixed window's floor (the flat call's bound too).
    let practical = flat_below;
    let recent = median_of_sorted(&pair_slopes(&x[n / 2..], &y[n / 2..]));
    let persistent = slope > 0.0 && recent >= PERSIST * slope;
    let climbing = lower > 0.0
        && lower >= practical
        && lower * span >= noise_floor
        && persistent
        && span >= MIN_SPAN_S;
    let flat = upper < flat_below;
    let capped = |e: f64, called: bool| {
        let e = if e.is_finite() {
            e.clamp(0.0, 1.0)
        } else {
            0.0
        };
        if called {
            1.0
        } else {
            e.min(0.99)
        }
    };
    Some(SignalLook {
        name: w.name.to_owned(),
        n,
        slope,
        lower,
        upper,
        flat_below,
        leak_evidence: capped(
            ((2.0 * rising - m) / c)
                .min(slope * span / noise_floor)
                .min(slope / practical),
            climbing,
        ),
        flat_evidence: capped((2.0 * under - m) / c, flat),
        climbing,
        flat,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: f64 = 1e6;
    /// 4 Hz, as `loadgen run` samples.
    const DT: f64 = 0.25;
    const WARMUP: f64 = 10.0;
    const HORIZON: f64 = 30.0;

    /// Gaussian noise, deterministic per seed (xorshift and Box–Muller), so
    /// the tests need no RNG dependency and never flake.
    fn gaussian(seed: u64, n: usize) -> Vec<f64> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).max(1);
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let (u, v) = (uniform(), uniform());
                (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
            })
            .collect()
    }

    /// A uniform draw in [0, 1) from a seed.
    fn draw(seed: u64, salt: u64) -> f64 {
        let g = gaussian(seed.wrapping_mul(31).wrapping_add(salt), 1)[0];
        super::super::stats::standard_normal_cdf(g)
    }

    /// One simulated run: what it decided and when (seconds since warm-up),
    /// every look, and the measured values.
    struct Simulated {
        outcome: Option<(Decision, f64)>,
        looks: Vec<Look>,
        measured: Vec<f64>,
    }

    /// A run of a signal `f(t)` (t since the load started) plus Gaussian
    /// noise of `sigma`, looked at once a second after a 10 s warm-up.
    fn run(kind: Kind, f: impl Fn(f64) -> f64, sigma: f64, seed: u64) -> Simulated {
        run_at(ALPHA, kind, f, sigma, seed)
    }

    /// [`run`] with another error budget.
    fn run_at(alpha: f64, kind: Kind, f: impl Fn(f64) -> f64, sigma: f64, seed: u64) -> Simulated {
        let total = ((WARMUP + HORIZON) / DT) as usize;
        let e = gaussian(seed, total + 1);
        let points: Vec<(f64, f64)> = (0..=total)
            .map(|i| {
                let t = i as f64 * DT;
                (t, f(t) + sigma * e[i])
            })
            .collect();
        let wy: Vec<f64> = points
            .iter()
            .filter(|p| p.0 < WARMUP)
            .map(|p| p.1)
            .collect();
        let noise = warmup_noise(&wy);
        let (mx, my): (Vec<f64>, Vec<f64>) = points
            .iter()
            .filter(|p| p.0 >= WARMUP)
            .map(|(t, v)| (t - WARMUP, *v))
            .unzip();
        let mut test = SequentialTest::with_alpha(HORIZON, alpha);
        let mut looks = Vec::new();
        let mut outcome = None;
        for second in 1..HORIZON as usize {
            let k = mx.partition_point(|x| *x <= second as f64);
            let w = Watched {
                name: "allocated",
                kind,
                x: &mx[..k],
                y: &my[..k],
                warmup_noise: noise,
            };
            let look = test.look(second as f64, &[w]);
            outcome = look.decision.clone().map(|d| (d, look.at_s));
            looks.push(look);
            if outcome.is_some() {
                break;
            }
        }
        Simulated {
            outcome,
            looks,
            measured: my,
        }
    }

    fn climbs(outcome: &Option<(Decision, f64)>) -> bool {
        matches!(outcome, Some((Decision::Climb { .. }, _)))
    }

    #[test]
    fn the_budget_is_spent_once_over_any_number_of_looks() {
        assert_eq!(spending(0.0), 0.0);
        assert!((spending(1.0) - 1.0).abs() < 1e-12);
        assert_eq!(spending(3.0), spending(1.0));
        // Pocock-type: more of it early than a straight line.
        assert!(spending(0.1) > 0.15 && spending(0.5) > 0.6);
        // Whatever the cadence, the levels of all the looks add up to at most ALPHA / SIGNALS.
        for every in [0.25, 1.0, 3.7] {
            let mut test = SequentialTest::new(HORIZON);
            let (x, y): (Vec<f64>, Vec<f64>) = (0..200).map(|i| (i as f64 * 0.25, 0.0)).unzip();
            let mut total = 0.0;
            let mut at = 0.0;
            while at < 60.0 {
                let k = x.partition_point(|v| *v <= at);
                let w = Watched {
                    name: "allocated",
                    kind: Kind::Bytes,
                    x: &x[..k],
                    y: &y[..k],
                    warmup_noise: 0.0,
                };
                total += test.look(at, &[w]).alpha;
                at += every;
            }
            assert!(total <= ALPHA / SIGNALS as f64 + 1e-12, "{every}: {total}");
            assert!(total > 0.9 * ALPHA / SIGNALS as f64, "{every}: {total}");
        }
    }

    #[test]
    fn a_steady_heap_climb_is_called_within_a_few_seconds() {
        let mut worst: f64 = 0.0;
        for seed in 1..=50 {
            // 2 MB/s on a 40 MB floor, 100 kB of noise: unbounded-cache at 200/s.
            let out = run(Kind::Bytes, |t| 40.0 * MB + 2.0 * MB * t, 0.1 * MB, seed).outcome;
            let Some((Decision::Climb { signal }, at)) = out else {
                panic!("seed {seed}: {out:?}");
            };
            assert_eq!(signal, "allocated");
            worst = worst.max(at);
        }
        eprintln!("50 heap climbs: slowest call {worst} s after warm-up");
        assert!(worst <= 4.0, "slowest call {worst} s after warm-up");
    }

    #[test]
    fn a_small_steady_climb_is_called_before_it_has_grown_the_floor() {
        // 56 kB/s, 30 kB of noise: label-cardinality at 200/s (279 B each).
        // Ten seconds grow 0.56 MB, under the 1 MiB floor; the rate is over
        // the floor's rate for the 30 s window (35 kB/s), so it is called.
        let mut worst: f64 = 0.0;
        for seed in 1..=50 {
            let out = run(Kind::Bytes, |t| 20.0 * MB + 0.056 * MB * t, 0.03 * MB, seed).outcome;
            assert!(climbs(&out), "seed {seed}: {out:?}");
            worst = worst.max(out.unwrap().1);
        }
        eprintln!("50 small climbs: slowest call {worst} s after warm-up");
        assert!(worst <= 10.0, "slowest call {worst} s after warm-up");
    }

    #[test]
    fn a_climb_slower_than_the_floor_rate_is_never_called() {
        // 20 kB/s grows 0.6 MB over the whole window: under the floor, so
        // not a practical leak however clear its slope.
        for seed in 1..=50 {
            let out = run(Kind::Bytes, |t| 20.0 * MB + 0.02 * MB * t, 0.005 * MB, seed).outcome;
            assert!(!climbs(&out), "seed {seed}: {out:?}");
        }
    }

    #[test]
    fn a_steady_task_climb_is_called_within_a_few_seconds() {
        for seed in 1..=50 {
            let out = run(Kind::Count, |t| (5.0 + 200.0 * t).round(), 3.0, seed).outcome;
            assert!(climbs(&out), "seed {seed}: {out:?}");
            assert!(out.unwrap().1 <= 4.0);
        }
    }

    #[test]
    fn pure_noise_is_not_called_and_its_interval_rarely_leaves_zero() {
        let (mut called, mut excluded, mut naive) = (0, 0, 0);
        for seed in 1..=200 {
            let sim = run(Kind::Bytes, |_| 30.0 * MB, 0.5 * MB, seed);
            called += usize::from(climbs(&sim.outcome));
            // The confidence sequence on its own: did any look put zero below it?
            excluded += usize::from(
                sim.looks
                    .iter()
                    .any(|l| l.signals.iter().any(|s| s.lower > 0.0)),
            );
            // A fixed-window p-value (Mann–Kendall, p < 0.01, rising) read at every look.
            naive += usize::from(sim.looks.iter().any(|l| {
                let k = l.signals.first().map(|s| s.n).unwrap_or(0);
                k >= 8
                    && super::super::stats::mann_kendall(&sim.measured[..k])
                        .is_some_and(|mk| mk.p_value < 0.01 && mk.z > 0.0)
            }));
        }
        eprintln!("200 noise series: {called} called, interval left zero in {excluded}, naive p < 0.01 in {naive}");
        assert_eq!(called, 0, "false leak calls on pure noise");
        // The budget is ALPHA / SIGNALS = 0.33% per signal; 2% is generous.
        assert!(
            excluded <= 4,
            "the interval left zero in {excluded} of 200 noise series"
        );
        assert!(
            naive > 2 * excluded.max(2),
            "naive {naive}, sequential {excluded}"
        );
    }

    #[test]
    fn the_confidence_sequence_holds_its_level_over_all_looks() {
        // A large budget, so that misses happen and can be counted: 30% split
        // over 3 signals is 10% per signal, over all 28 looks together.
        let alpha = 0.3;
        let (mut excluded, mut naive) = (0, 0);
        for seed in 1..=400 {
            let sim = run_at(alpha, Kind::Bytes, |_| 30.0 * MB, 0.5 * MB, 1000 + seed);
            excluded += usize::from(
                sim.looks
                    .iter()
                    .any(|l| l.signals.iter().any(|s| s.lower > 0.0)),
            );
            // The same level (10%, one-sided) spent again at every look.
            naive += usize::from(sim.looks.iter().any(|l| {
                let k = l.signals.first().map(|s| s.n).unwrap_or(0);
                k >= 8
                    && super::super::stats::mann_kendall(&sim.measured[..k])
                        .is_some_and(|mk| mk.p_value < 0.2 && mk.z > 0.0)
            }));
        }
        eprintln!("400 noise series at 10% per signal: interval left zero in {excluded}, naive in {naive}");
        assert!(excluded <= 60, "{excluded} of 400 (budget 10%: 40)");
        assert!(naive > 2 * excluded, "naive {naive}, sequential {excluded}");
    }

    #[test]
    fn a_bounded_rise_that_levels_off_is_not_called() {
        for seed in 1..=100 {
            // Fills 8 MB at 2 MB/s, full anywhere from 4 s before the end of
            // warm-up to 1 s into measurement, then holds.
            let full = WARMUP - 4.0 + 5.0 * draw(seed, 1);
            let fill = |t: f64| 2.0 * MB * (t - (full - 4.0)).clamp(0.0, 4.0);
            let out = run(Kind::Bytes, |t| 30.0 * MB + fill(t), 0.05 * MB, seed).outcome;
            assert!(!climbs(&out), "seed {seed} (full at {full:.1} s): {out:?}");
        }
    }

    #[test]
    fn churn_around_a_flat_floor_is_not_called() {
        for seed in 1..=100 {
            // A sawtooth: rises `amp` over `period` seconds and drops back, any phase.
            let period = 1.0 + 5.0 * draw(seed, 2);
            let amp = (1.0 + 4.0 * draw(seed, 3)) * MB;
            let phase = period * draw(seed, 4);
            let saw = |t: f64| amp * ((t + phase) % period) / period;
            let out = run(Kind::Bytes, |t| 20.0 * MB + saw(t), 0.05 * MB, seed).outcome;
            assert!(
                !climbs(&out),
                "seed {seed} (period {period:.1} s, {amp} B): {out:?}"
            );
        }
    }

    #[test]
    fn a_flat_signal_is_called_flat_before_the_maximum() {
        let Simulated {
            outcome: out,
            looks,
            ..
        } = run(Kind::Bytes, |_| 30.0 * MB, 0.05 * MB, 7);
        let Some((Decision::Flat, at)) = out else {
            panic!("{out:?}");
        };
        eprintln!("flat called {at} s after warm-up");
        assert!(at < HORIZON - 5.0, "{at}");
        assert!(looks[0].flat_evidence() < looks.last().unwrap().flat_evidence());
    }

    #[test]
    fn a_slow_leak_is_neither_called_nor_called_flat_early() {
        // 100 kB/s: the full window grows 3 MB; its upper bound stays above
        // the flat line, and early its growth is below the practical floor.
        let Simulated {
            outcome: out,
            looks,
            ..
        } = run(Kind::Bytes, |t| 30.0 * MB + 0.1 * MB * t, 0.3 * MB, 3);
        assert!(!matches!(out, Some((Decision::Flat, _))), "{out:?}");
        assert!(looks.iter().all(|l| l.at_s > 5.0 || l.decision.is_none()));
    }
}
