//! Reading pprof heap profiles and diffing them by allocation site.
//!
//! A profile is the gzipped protobuf `GET /debug/pprof/heap` answers (the
//! format `pprof` and `go tool pprof` read). Only the messages a diff needs are
//! declared here (prost skips the rest). A sample's bytes are attributed to
//! its *allocation site*: the innermost frame of the application's own code,
//! told by its source file (not the Rust standard library, not a crate from
//! the cargo registry, not the allocator's C) or by a crate prefix such as
//! `leaklab_service::` in its name; else the innermost frame that is not the
//! allocator, the runtime or the standard library. Optimised builds name
//! functions briefly (`compute_value`), so a site reads `name (file:line)`.

use std::collections::HashMap;
use std::io::Read;

use anyhow::{Context, Result};
use serde::Serialize;

/// `perftools.profiles.Profile`, the parts a diff reads.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Profile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// Leaf (innermost) first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Inlined frames: the last entry is the caller the others were inlined into.
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
}

/// Decodes a (gzipped or plain) pprof protobuf.
pub fn decode(bytes: &[u8]) -> Result<Profile> {
    let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .context("gunzip pprof")?;
        out
    } else {
        bytes.to_vec()
    };
    <Profile as prost::Message>::decode(raw.as_slice()).context("decode pprof protobuf")
}

/// Frames that are the machinery of allocation, not a site worth naming.
fn is_machinery(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "alloc::",
        "<alloc::",
        "core::",
        "<core::",
        "std::",
        "<std::",
        "__rust",
        "__rg_",
        "_rjem",
        "je_",
        "prof_",
        "imalloc",
        "malloc",
        "calloc",
        "realloc",
        "tikv_jemalloc",
        "<tikv_jemalloc",
        "hashbrown::",
        "<hashbrown::",
        "bytes::",
        "<bytes::",
        "[",
        "0x",
        "tokio::runtime::task",
        "<tokio::runtime::task",
    ];
    name.is_empty() || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Trims a symbol to a readable name: generic arguments and closure suffixes stay,
/// the hash suffix (`::h0123abcd...`) goes.
fn readable(name: &str) -> String {
    match name.rfind("::h") {
        Some(i) if name.len() - i == 19 && name[i + 3..].chars().all(|c| c.is_ascii_hexdigit()) => {
            name[..i].to_owned()
        }
        _ => name.to_owned(),
    }
}

/// In-use bytes by allocation site.
#[derive(Clone, Debug, Default)]
pub struct Sites {
    pub bytes: HashMap<String, i64>,
    pub total: i64,
}

/// Source files that are not the application's own code.
fn third_party_file(file: &str) -> bool {
    file.is_empty()
        || file.starts_with("/rustc/")
        || file.contains("/library/")
        || file.contains("/.cargo/registry/")
        || file.contains("/.cargo/git/")
        || file.contains("jemalloc")
        || file.ends_with(".c")
        || file.ends_with(".h")
        || file.ends_with(".S")
        || file.ends_with(".s")
}

/// The last `n` components of a path.
fn short_path(file: &str, n: usize) -> String {
    let parts: Vec<&str> = file.rsplit('/').take(n).collect();
    parts.into_iter().rev().collect::<Vec<_>>().join("/")
}

/// Sums a profile's bytes by allocation site; `app_prefix` names the
/// application's own crate (e.g. `leaklab_service::`).
pub fn sites(profile: &Profile, app_prefix: &str) -> Sites {
    let string = |i: i64| {
        profile
            .string_table
            .get(i as usize)
            .map(String::as_str)
            .unwrap_or("")
    };
    let bytes_index = profile
        .sample_type
        .iter()
        .position(|t| string(t.unit) == "bytes")
        .unwrap_or(0);
    let functions: HashMap<u64, (&str, &str)> = profile
        .function
        .iter()
        .map(|f| (f.id, (string(f.name), string(f.filename))))
        .collect();
    let locations: HashMap<u64, &Location> = profile.location.iter().map(|l| (l.id, l)).collect();
    let mut out = Sites::default();
    for sample in &profile.sample {
        let value = sample.value.get(bytes_index).copied().unwrap_or(0);
        // Frames leaf-first: each location's lines are innermost-first too.
        let frames = sample
            .location_id
            .iter()
            .filter_map(|id| locations.get(id))
            .flat_map(|loc| loc.line.iter())
            .filter_map(|line| {
                functions
                    .get(&line.function_id)
                    .map(|(name, file)| (*name, *file, line.line))
            });
        let mut own = None;
        let mut first_outside = None;
        for (name, file, line) in frames {
            let named_own = name.starts_with(app_prefix) && !name.contains("::alloc");
            if named_own || !third_party_file(file) {
                own = Some((name, file, line));
                break;
            }
            if first_outside.is_none() && !is_machinery(name) {
                first_outside = Some((name, file, line));
            }
        }
        let site = match own.or(first_outside) {
            Some((name, file, line)) if !file.is_empty() => {
                format!("{} ({}:{line})", readable(name), short_path(file, 3))
            }
            Some((name, _, _)) => readable(name),
            None => "(unsymbolized)".to_owned(),
        };
        *out.bytes.entry(site).or_default() += value;
        out.total += value;
    }
    out
}

/// One allocation site's growth between two profiles.
#[derive(Clone, Debug, Serialize)]
pub struct SiteGrowth {
    pub site: String,
    pub base_bytes: i64,
    pub end_bytes: i64,
    pub growth_bytes: i64,
}

/// A diff as text, a row per site: growth, base, end, site; `what` ends
/// the header (which bytes, since when).
pub fn diff_table<'a>(rows: impl IntoIterator<Item = &'a SiteGrowth>, what: &str) -> String {
    let mut text = format!("growth      base        end         allocation site ({what})\n");
    for r in rows {
        text.push_str(&format!(
            "{:>10}  {:>10}  {:>10}  {}\n",
            crate::human::human_bytes(r.growth_bytes as f64),
            crate::human::human_bytes(r.base_bytes as f64),
            crate::human::human_bytes(r.end_bytes as f64),
            r.site
        ));
    }
    text
}

/// Sites ordered by growth (largest first), at most `top`.
pub fn diff(base: &Sites, end: &Sites, top: usize) -> Vec<SiteGrowth> {
    let mut rows: Vec<SiteGrowth> = end
        .bytes
        .iter()
        .map(|(site, &end_bytes)| {
            let base_bytes = base.bytes.get(site).copied().unwrap_or(0);
            SiteGrowth {
                site: site.clone(),
                base_bytes,
                end_bytes,
                growth_bytes: end_bytes - base_bytes,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.growth_bytes
            .cmp(&a.growth_bytes)
            .then_with(|| a.site.cmp(&b.site))
    });
    rows.truncate(top);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// A profile with two stacks: 3 MiB under the app's `compute_value`, 1 MiB
    /// in the runtime only.
    fn profile(app_bytes: i64) -> Profile {
        let strings = [
            "",
            "space",
            "bytes",
            "_rjem_malloc",
            "alloc::raw_vec::finish_grow",
            "leaklab_service::components::cache::compute_value::h0123456789abcdef",
            "tokio::runtime::park",
            "main",
            "/work/service/src/components/cache.rs",
            "/root/.cargo/registry/src/x/tokio/src/park.rs",
            "/rustc/abc/library/alloc/src/raw_vec.rs",
            "src/prof.c",
            "/work/service/src/main.rs",
        ];
        // Functions 1-5 with their files: malloc (C), finish_grow (std), compute_value (own), park (registry), main (own).
        let files = [0, 11, 10, 8, 9, 12];
        let f = |id: u64, name: i64| Function {
            id,
            name,
            filename: files[id as usize],
        };
        let loc = |id: u64, fid: u64| Location {
            id,
            line: vec![Line {
                function_id: fid,
                line: 1,
            }],
        };
        Profile {
            sample_type: vec![ValueType { r#type: 1, unit: 2 }],
            sample: vec![
                Sample {
                    location_id: vec![1, 2, 3, 5],
                    value: vec![app_bytes],
                },
                Sample {
                    location_id: vec![1, 4, 5],
                    value: vec![1 << 20],
                },
            ],
            location: vec![loc(1, 1), loc(2, 2), loc(3, 3), loc(4, 4), loc(5, 5)],
            function: vec![f(1, 3), f(2, 4), f(3, 5), f(4, 6), f(5, 7)],
            string_table: strings.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn bytes_are_attributed_to_the_app_frame_and_diffed() {
        let base = sites(&profile(3 << 20), "leaklab_service::");
        let end_profile = profile(30 << 20);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &end_profile.encode_to_vec()).unwrap();
        let end = sites(&decode(&gz.finish().unwrap()).unwrap(), "leaklab_service::");
        let rows = diff(&base, &end, 5);
        assert_eq!(
            rows[0].site,
            "leaklab_service::components::cache::compute_value (src/components/cache.rs:1)"
        );
        assert_eq!(rows[0].growth_bytes, 27 << 20);
        // The runtime-only stack is attributed to the first own frame above it.
        assert_eq!(rows[1].site, "main (service/src/main.rs:1)");
        assert_eq!(rows[1].growth_bytes, 0);
        assert_eq!(end.total, (30 << 20) + (1 << 20));
    }
}
