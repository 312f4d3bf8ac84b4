//! `GET /debug/pprof/allocs`: the allocation profile. Bytes and objects
//! allocated per allocation site, freed or not (Go pprof's `alloc_space` and
//! `alloc_objects`), beside the in-use ones, as a gzipped pprof protobuf.
//!
//! It is the profile for churn and regrowth: code that frees what it
//! allocates never shows in an in-use profile, but every byte it asks for
//! shows here.
//!
//! # Where the numbers come from
//!
//! jemalloc keeps cumulative counts per sampled call stack when `prof_accum`
//! is on (the binary's `malloc_conf` turns it on, see `main.rs`). A heap dump
//! (`prof.dump`, format `heap_v2`) then carries, for the whole process and for
//! each stack, `t*: <inuse objects>: <inuse bytes> [<allocated objects>:
//! <allocated bytes>]`. jemalloc_pprof's parser reads only the in-use pair, so
//! [`parse_heap_v2`] reads the dump itself, and each pair is scaled back from
//! jemalloc's sampling (one allocation per 2^`lg_prof_sample` bytes on
//! average) the way jemalloc_pprof and `jeprof` scale in-use counts
//! ([`unbias`]).
//!
//! Without `?seconds` the profile counts everything allocated since heap
//! profiling started (it restarts when profiling is switched off, which resets
//! jemalloc's counts). With `?seconds=N` (1 to 60) it takes one dump, waits N
//! seconds, takes another and serves the difference: what was allocated
//! during the interval, and how in-use changed over it (Go's delta profiles
//! do the same).
//!
//! Symbolization and the mappings come from `pprof_util` (through
//! jemalloc_pprof's `StackProfile::to_pprof`), which writes one value per
//! sample: [`to_pprof`] lets it write each stack's index as that value, then
//! replaces it with the stack's four counts ([`super::pprof`]).

use std::collections::HashMap;
use std::io::BufRead;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use jemalloc_pprof::{StackProfile, WeightedStack};
use tokio_util::sync::CancellationToken;

use super::{heap, pprof};
use crate::error::AppError;

/// The longest interval `?seconds=N` accepts (the shortest is 1 s).
pub const MAX_INTERVAL_S: u64 = 60;

/// The sample types of the profile, in the order of each sample's values
/// (Go's heap and allocs profiles use the same four, in this order).
pub const SAMPLE_TYPES: [(&str, &str); 4] = [
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
];

/// One `t*:` line of a heap_v2 dump, as jemalloc wrote it (sampled, not yet scaled).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawCounts {
    pub inuse_objects: u64,
    pub inuse_bytes: u64,
    /// Cumulative; zero unless jemalloc runs with `prof_accum`.
    pub alloc_objects: u64,
    pub alloc_bytes: u64,
}

/// A parsed heap_v2 dump.
#[derive(Clone, Debug, Default)]
pub struct HeapDump {
    /// Average bytes between two samples (`2^lg_prof_sample`).
    pub sample_period: u64,
    /// The whole process.
    pub total: RawCounts,
    /// Each call stack jemalloc sampled, leaf (innermost frame) first.
    pub stacks: Vec<(Vec<usize>, RawCounts)>,
}

/// Estimated counts of one allocation site, scaled back from the samples.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SiteCounts {
    pub alloc_objects: f64,
    pub alloc_space: f64,
    pub inuse_objects: f64,
    pub inuse_space: f64,
}

impl SiteCounts {
    fn from_raw(raw: RawCounts, period: f64) -> SiteCounts {
        let (alloc_objects, alloc_space) = unbias(raw.alloc_objects, raw.alloc_bytes, period);
        let (inuse_objects, inuse_space) = unbias(raw.inuse_objects, raw.inuse_bytes, period);
        SiteCounts {
            alloc_objects,
            alloc_space,
            inuse_objects,
            inuse_space,
        }
    }

    fn minus(self, before: SiteCounts) -> SiteCounts {
        SiteCounts {
            alloc_objects: self.alloc_objects - before.alloc_objects,
            alloc_space: self.alloc_space - before.alloc_space,
            inuse_objects: self.inuse_objects - before.inuse_objects,
            inuse_space: self.inuse_space - before.inuse_space,
        }
    }

    /// The values of a pprof sample, in [`SAMPLE_TYPES`] order.
    fn values(self) -> [i64; 4] {
        [
            self.alloc_objects,
            self.alloc_space,
            self.inuse_objects,
            self.inuse_space,
        ]
        .map(|v| v.round() as i64)
    }
}

/// Scales a sampled (objects, bytes) pair back to an estimate of the real
/// one, as `jeprof`'s `AdjustSamples` and jemalloc_pprof do: a stack whose
/// allocations average `s` bytes was sampled with probability
/// `1 - exp(-s / period)` per allocation. jemalloc (with its default
/// `prof_unbias`) writes its counts so that this formula recovers its own
/// per-allocation unbiased sums.
pub fn unbias(objects: u64, bytes: u64, period: f64) -> (f64, f64) {
    if bytes == 0 {
        return (0.0, 0.0);
    }
    // jemalloc may round a stack's object count down to 0 while bytes remain:
    // then the mean size is unbounded and the scale is 1, as in jeprof.
    let ratio = if objects == 0 {
        f64::INFINITY
    } else {
        bytes as f64 / objects as f64 / period
    };
    let scale = 1.0 / (1.0 - (-ratio).exp());
    (objects as f64 * scale, bytes as f64 * scale)
}

/// Reads the four counts of a `t*: a: b [c: d]` line (after `t*:`).
fn parse_counts(words: &[&str]) -> anyhow::Result<RawCounts> {
    let [objs, bytes, cum_objs, cum_bytes] = words else {
        bail!("a count line has {} fields, not 4", words.len());
    };
    let number = |w: &str| -> anyhow::Result<u64> {
        w.trim_matches(|c| matches!(c, '[' | ']' | ':'))
            .parse()
            .with_context(|| format!("count {w:?}"))
    };
    Ok(RawCounts {
        inuse_objects: number(objs)?,
        inuse_bytes: number(bytes)?,
        alloc_objects: number(cum_objs)?,
        alloc_bytes: number(cum_bytes)?,
    })
}

/// Parses a jemalloc heap_v2 dump: the header's totals and, for each `@`
/// stack, its `t*:` counts. Per-thread lines and the `MAPPED_LIBRARIES:`
/// section are skipped.
pub fn parse_heap_v2(reader: impl BufRead) -> anyhow::Result<HeapDump> {
    let mut lines = reader.lines();
    let first = lines.next().context("the heap dump is empty")??;
    let sample_period: u64 = first
        .trim()
        .strip_prefix("heap_v2/")
        .with_context(|| format!("not a heap_v2 dump: {first:?}"))?
        .parse()
        .context("the sample period in the heap_v2 header")?;
    let mut dump = HeapDump {
        sample_period,
        ..HeapDump::default()
    };
    let mut stack: Option<Vec<usize>> = None;
    let mut header = true;
    for line in lines {
        let line = line?;
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        match words.first().copied() {
            Some("MAPPED_LIBRARIES:") => break,
            Some("@") => {
                if stack.is_some() {
                    bail!("a stack without counts in the heap dump");
                }
                header = false;
                let addrs = words[1..]
                    .iter()
                    .map(|w| usize::from_str_radix(w.trim_start_matches("0x"), 16))
                    .collect::<Result<Vec<_>, _>>()
                    .context("a stack address in the heap dump")?;
                stack = Some(addrs);
            }
            Some("t*:") => {
                let counts = parse_counts(&words[1..])?;
                if let Some(addrs) = stack.take() {
                    dump.stacks.push((addrs, counts));
                } else if header {
                    dump.total = counts;
                }
            }
            _ => {}
        }
    }
    if stack.is_some() {
        bail!("a stack without counts at the end of the heap dump");
    }
    Ok(dump)
}

/// The allocation sites of one moment (or of an interval), scaled.
#[derive(Clone, Debug, Default)]
pub struct AllocSnapshot {
    pub sample_period: u64,
    /// Keyed by call stack, leaf first.
    pub sites: HashMap<Vec<usize>, SiteCounts>,
    /// [`heap::profiling_resets`] when the dump was taken.
    resets: u64,
}

impl AllocSnapshot {
    /// Scales a parsed dump.
    pub fn from_dump(dump: HeapDump) -> AllocSnapshot {
        let period = dump.sample_period.max(1) as f64;
        let sites = dump
            .stacks
            .into_iter()
            .map(|(addrs, raw)| (addrs, SiteCounts::from_raw(raw, period)))
            .collect();
        AllocSnapshot {
            sample_period: dump.sample_period,
            sites,
            resets: 0,
        }
    }

    /// What changed from `before` to `self`, site by site: the allocations
    /// made in between, and the change of what is in use.
    pub fn since(&self, before: &AllocSnapshot) -> AllocSnapshot {
        let mut sites: HashMap<Vec<usize>, SiteCounts> = self
            .sites
            .iter()
            .map(|(addrs, now)| {
                let then = before.sites.get(addrs).copied().unwrap_or_default();
                (addrs.clone(), now.minus(then))
            })
            .collect();
        for (addrs, then) in &before.sites {
            sites
                .entry(addrs.clone())
                .or_insert_with(|| SiteCounts::default().minus(*then));
        }
        sites.retain(|_, c| c.values() != [0; 4]);
        AllocSnapshot {
            sample_period: self.sample_period,
            sites,
            resets: self.resets,
        }
    }

    /// The sum over all sites.
    pub fn total(&self) -> SiteCounts {
        self.sites
            .values()
            .fold(SiteCounts::default(), |a, c| SiteCounts {
                alloc_objects: a.alloc_objects + c.alloc_objects,
                alloc_space: a.alloc_space + c.alloc_space,
                inuse_objects: a.inuse_objects + c.inuse_objects,
                inuse_space: a.inuse_space + c.inuse_space,
            })
    }
}

/// Whether jemalloc keeps cumulative counts (`opt.prof_accum`); false
/// without profiling compiled in.
pub fn prof_accum() -> bool {
    // SAFETY: "opt.prof_accum" is documented as readable and a bool
    // (https://jemalloc.net/jemalloc.3.html#opt.prof_accum); reading it from a
    // build without profiling fails with an error, not undefined behaviour.
    unsafe { tikv_jemalloc_ctl::raw::read::<bool>(b"opt.prof_accum\0") }.unwrap_or(false)
}

/// Takes a heap dump and reads its cumulative counts. Errors (503) when
/// profiling is not compiled in, inactive, or runs without `prof_accum`.
pub async fn snapshot() -> Result<AllocSnapshot, AppError> {
    let mut guard = super::heap::active_profiler().await?;
    if !prof_accum() {
        return Err(AppError::Unavailable(
            "jemalloc runs without cumulative counts (prof_accum off, e.g. \
             MALLOC_CONF=prof_accum:false): no allocation profile"
                .into(),
        ));
    }
    // Read under the lock: switching profiling off (which resets the counts)
    // takes the same lock.
    let resets = heap::profiling_resets();
    tokio::task::spawn_blocking(move || {
        let file = guard.dump()?;
        drop(guard);
        let dump = parse_heap_v2(std::io::BufReader::new(file))?;
        Ok(AllocSnapshot {
            resets,
            ..AllocSnapshot::from_dump(dump)
        })
    })
    .await
    .map_err(|e| AppError::Internal(anyhow::anyhow!("heap dump task: {e}")))?
    .map_err(|e: anyhow::Error| AppError::Internal(e.context("jemalloc heap dump")))
}

/// The allocation profile, gzipped pprof: since profiling started, or over
/// the next `seconds` (1 to [`MAX_INTERVAL_S`]). A shutdown that starts
/// during the interval ends it with a 503.
pub async fn profile(
    seconds: Option<u64>,
    draining: &CancellationToken,
) -> Result<Vec<u8>, AppError> {
    let Some(seconds) = seconds else {
        let now = snapshot().await?;
        return render(now, None, "allocations since heap profiling started".into()).await;
    };
    if !(1..=MAX_INTERVAL_S).contains(&seconds) {
        return Err(AppError::BadRequest(format!(
            "seconds must be 1 to {MAX_INTERVAL_S}, not {seconds}"
        )));
    }
    let before = snapshot().await?;
    let started = std::time::Instant::now();
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(seconds)) => {}
        () = draining.cancelled() => {
            return Err(AppError::Unavailable(
                "the service is shutting down: the interval was cut short".into(),
            ));
        }
    }
    let after = snapshot().await?;
    let elapsed = started.elapsed();
    if after.resets != before.resets {
        return Err(AppError::Unavailable(
            "heap profiling was switched off during the interval, which restarts its counts: \
             ask again"
                .into(),
        ));
    }
    render(
        after.since(&before),
        Some(elapsed),
        format!("allocations during {seconds} s"),
    )
    .await
}

/// Symbolizes and encodes on a blocking thread.
async fn render(
    snapshot: AllocSnapshot,
    interval: Option<Duration>,
    comment: String,
) -> Result<Vec<u8>, AppError> {
    tokio::task::spawn_blocking(move || to_pprof(&snapshot, interval, &comment))
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("allocation profile task: {e}")))?
        .map_err(|e| AppError::Internal(e.context("encoding the allocation profile")))
}

/// Encodes `snapshot` as a gzipped pprof profile with the four
/// [`SAMPLE_TYPES`], `alloc_space` shown first.
pub fn to_pprof(
    snapshot: &AllocSnapshot,
    interval: Option<Duration>,
    comment: &str,
) -> anyhow::Result<Vec<u8>> {
    let sites: Vec<(&Vec<usize>, &SiteCounts)> = snapshot.sites.iter().collect();
    // pprof_util symbolizes and writes one value per sample, the stack's
    // weight: let that value be the stack's index, then put the counts in.
    let mut stacks = StackProfile::default();
    for (index, (addrs, _)) in sites.iter().enumerate() {
        // StackProfile holds stacks root first.
        let addrs = addrs.iter().rev().copied().collect();
        let weight = index as f64;
        stacks.push_stack(WeightedStack { addrs, weight }, None);
    }
    for mapping in mappings::MAPPINGS.as_deref().unwrap_or_default() {
        stacks.push_mapping(mapping.clone());
    }
    let written = stacks.to_pprof(("alloc_space", "bytes"), ("space", "bytes"), None);
    let mut profile = pprof::decode(&written)?;
    if profile.sample.len() != sites.len() {
        bail!(
            "pprof_util wrote {} samples for {} stacks",
            profile.sample.len(),
            sites.len()
        );
    }
    for sample in &mut profile.sample {
        let index = sample
            .value
            .first()
            .and_then(|i| usize::try_from(*i).ok())
            .filter(|i| *i < sites.len())
            .context("pprof_util wrote a sample without its stack's index")?;
        sample.value = sites[index].1.values().to_vec();
    }
    profile.sample_type = SAMPLE_TYPES
        .iter()
        .map(|(kind, unit)| pprof::ValueType {
            r#type: profile.intern(kind),
            unit: profile.intern(unit),
        })
        .collect();
    profile.default_sample_type = profile.intern("alloc_space");
    profile.period = i64::try_from(snapshot.sample_period).unwrap_or(i64::MAX);
    if let Some(interval) = interval {
        profile.duration_nanos = i64::try_from(interval.as_nanos()).unwrap_or(i64::MAX);
        let end = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        profile.time_nanos =
            i64::try_from(end.saturating_sub(interval).as_nanos()).unwrap_or(i64::MAX);
    }
    let comment = format!(
        "leaklab: {comment}; jemalloc samples one allocation per {} bytes on average, counts scaled back",
        snapshot.sample_period
    );
    profile.comment = vec![profile.intern(&comment)];
    profile.to_gzipped()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "heap_v2/524288
  t*: 3: 1200 [10: 5242880]
  t0: 3: 1200 [10: 5242880]
@ 0x10 0x20 0x30
  t*: 1: 1024 [8: 8388608]
  t0: 1: 1024 [8: 8388608]
@ 0x10 0x40
  t*: 0: 0 [2: 128]
  t1: 0: 0 [2: 128]

MAPPED_LIBRARIES:
55d0c0000000-55d0c0001000 r--p 00000000 08:01 123 /usr/bin/leaklab-service
";

    #[test]
    fn a_heap_v2_dump_reads_in_use_and_cumulative_counts_per_stack() {
        let dump = parse_heap_v2(DUMP.as_bytes()).unwrap();
        assert_eq!(dump.sample_period, 524_288);
        assert_eq!(dump.total.alloc_bytes, 5_242_880);
        assert_eq!(dump.stacks.len(), 2);
        assert_eq!(dump.stacks[0].0, vec![0x10, 0x20, 0x30]);
        assert_eq!(
            dump.stacks[0].1,
            RawCounts {
                inuse_objects: 1,
                inuse_bytes: 1024,
                alloc_objects: 8,
                alloc_bytes: 8_388_608
            }
        );
        assert_eq!(dump.stacks[1].1.inuse_bytes, 0);
        assert_eq!(dump.stacks[1].1.alloc_objects, 2);
    }

    #[test]
    fn a_broken_dump_is_an_error_not_a_panic() {
        for broken in [
            "",
            "heap_v3/1\n",
            "heap_v2/x\n",
            "heap_v2/1\n@ 0xzz\n  t*: 1: 1 [1: 1]\n",
            "heap_v2/1\n@ 0x1\n",
            "heap_v2/1\n@ 0x1\n  t*: 1: 1\n",
        ] {
            assert!(parse_heap_v2(broken.as_bytes()).is_err(), "{broken:?}");
        }
    }

    #[test]
    fn samples_are_scaled_back_as_jeprof_does() {
        // 8 MiB allocations are nearly always sampled: little scaling.
        let (objs, bytes) = unbias(8, 64 << 20, 524_288.0);
        assert!((bytes / (64 << 20) as f64 - 1.0).abs() < 1e-6, "{bytes}");
        assert!((objs - 8.0).abs() < 1e-3);
        // 1 MiB ones are sampled with probability 1 - e^-2.
        let (_, bytes) = unbias(8, 8 << 20, 524_288.0);
        let expected = (8 << 20) as f64 / (1.0 - (-2.0f64).exp());
        assert!((bytes - expected).abs() < 1.0, "{bytes}");
        // A 64-byte allocation is sampled about once per 8192: scaled up that much.
        let (objs, bytes) = unbias(1, 64, 524_288.0);
        assert!((objs - 8192.5).abs() < 1.0, "{objs}");
        assert!((bytes - 64.0 * 8192.5).abs() < 64.0, "{bytes}");
        // Nothing sampled, or a count rounded down to 0: no NaN.
        assert_eq!(unbias(0, 0, 524_288.0), (0.0, 0.0));
        assert_eq!(unbias(0, 100, 524_288.0), (0.0, 100.0));
    }

    #[test]
    fn an_interval_holds_what_was_allocated_in_between() {
        let before = AllocSnapshot::from_dump(parse_heap_v2(DUMP.as_bytes()).unwrap());
        let later = DUMP
            .replace("t*: 1: 1024 [8: 8388608]", "t*: 1: 1024 [12: 12582912]")
            .replace(
                "@ 0x10 0x40\n  t*: 0: 0 [2: 128]",
                "@ 0x50\n  t*: 1: 2097152 [1: 2097152]",
            );
        let after = AllocSnapshot::from_dump(parse_heap_v2(later.as_bytes()).unwrap());
        let delta = after.since(&before);
        // One site grew by 4 MiB, one is new (2 MiB), one is gone from the dump.
        assert_eq!(delta.sites.len(), 3);
        // Four more 1 MiB allocations at the first site, scaled as in jeprof.
        let grown = delta.sites[&vec![0x10, 0x20, 0x30]];
        let four_mib = 4.0 * 1048576.0 / (1.0 - (-2.0f64).exp());
        assert!((grown.alloc_space - four_mib).abs() < 1.0, "{grown:?}");
        assert!((grown.alloc_objects - 4.0 / (1.0 - (-2.0f64).exp())).abs() < 1e-6);
        assert_eq!(grown.inuse_space, 0.0);
        let new_site = unbias(1, 2 << 20, 524_288.0).1;
        let gone_site = unbias(2, 128, 524_288.0).1;
        let total = delta.total();
        assert!(
            (total.alloc_space - (four_mib + new_site - gone_site)).abs() < 1.0,
            "{total:?}"
        );
        // A site missing from the later dump (jemalloc with prof_accum keeps
        // every stack, so only a reset does this) comes back negative, not dropped.
        assert!(delta.sites[&vec![0x10, 0x40]].alloc_space < 0.0);
    }
}
