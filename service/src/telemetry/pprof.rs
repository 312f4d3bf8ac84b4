//! The pprof profile format (`perftools.profiles.Profile`, pprof's
//! `proto/profile.proto`) as prost messages, every field declared so a
//! profile decodes and encodes again without losing any, and the gzip framing
//! `pprof` and `go tool pprof` read.
//!
//! The in-use heap profile is written by `pprof_util` (through
//! `jemalloc_pprof`), whose own copy of these types is private; the
//! allocation profile ([`super::allocs`]) needs several values per sample, so
//! it decodes what `pprof_util` wrote and re-encodes it with these. Tests
//! decode the service's profiles with them too.

use std::io::{Read, Write};

use anyhow::Context;
use prost::Message;

/// A whole profile: samples, the stacks they point at, and a string table
/// every other message indexes (entry 0 is the empty string).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Profile {
    /// What each of a sample's values measures, in order.
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "7")]
    pub drop_frames: i64,
    #[prost(int64, tag = "8")]
    pub keep_frames: i64,
    /// When the profile was taken, nanoseconds since the Unix epoch.
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    /// How long the profile covers, nanoseconds (0 when it is not an interval).
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    /// Bytes allocated between two samples, on average (jemalloc's sample period).
    #[prost(int64, tag = "12")]
    pub period: i64,
    /// Free-form notes (`go tool pprof -comments`), as string-table indices.
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    /// The sample type a viewer shows first, as a string-table index.
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

/// A (type, unit) pair such as (`alloc_space`, `bytes`), as string-table indices.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// One call stack and its values (one per sample type).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// Leaf (innermost) first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(int64, tag = "1")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    pub str: i64,
    #[prost(int64, tag = "3")]
    pub num: i64,
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

/// A loaded object (the binary, a shared library).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Mapping {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    #[prost(int64, tag = "5")]
    pub filename: i64,
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

/// One frame address and the (inlined) functions at it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    #[prost(uint64, tag = "3")]
    pub address: u64,
    /// Inlined frames: the last entry is the caller the others were inlined into.
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
    #[prost(bool, tag = "5")]
    pub is_folded: bool,
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
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}

impl Profile {
    /// The string at `index` of the string table ("" when out of range).
    pub fn string(&self, index: i64) -> &str {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.string_table.get(i))
            .map_or("", String::as_str)
    }

    /// The index of `s` in the string table, appended when missing.
    pub fn intern(&mut self, s: &str) -> i64 {
        if self.string_table.is_empty() {
            self.string_table.push(String::new());
        }
        let index = match self.string_table.iter().position(|t| t == s) {
            Some(i) => i,
            None => {
                self.string_table.push(s.to_owned());
                self.string_table.len() - 1
            }
        };
        i64::try_from(index).expect("a string table shorter than i64::MAX")
    }

    /// The position of the sample type named `name` (e.g. `alloc_space`).
    pub fn sample_index(&self, name: &str) -> Option<usize> {
        self.sample_type
            .iter()
            .position(|t| self.string(t.r#type) == name)
    }

    /// The sum over all samples of the value at `index`.
    pub fn total(&self, index: usize) -> i64 {
        self.sample.iter().filter_map(|s| s.value.get(index)).sum()
    }

    /// Encodes and gzips the profile, as `/debug/pprof/*` serve it.
    pub fn to_gzipped(&self) -> anyhow::Result<Vec<u8>> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&self.encode_to_vec())?;
        Ok(gz.finish()?)
    }
}

/// Decodes a gzipped (or plain) pprof protobuf.
pub fn decode(bytes: &[u8]) -> anyhow::Result<Profile> {
    let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .context("gunzip pprof")?;
        out
    } else {
        bytes.to_vec()
    };
    Profile::decode(raw.as_slice()).context("decode pprof protobuf")
}
