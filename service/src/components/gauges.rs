//! [`Gauges`]: the numbers each component reports, with what Prometheus
//! needs to expose them properly: whether a number is a gauge or a counter,
//! and a HELP line saying what it counts and what holds it.
//!
//! `/debug/memory` shows them as one `components` map of name to value;
//! `/metrics` gives each its own family, `leaklab_<name>` for gauges and
//! `leaklab_<name>_total` for counters.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

/// How a number behaves over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Goes up and down (a size, a count of live things, a 0/1 state).
    Gauge,
    /// Only goes up (events since start).
    Counter,
}

/// What `/metrics` says about one number.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub kind: Kind,
    pub help: &'static str,
    /// The name gives away which path (leaky or fixed) is running, which a
    /// real service's telemetry would not: hidden in mystery mode.
    pub names_variant: bool,
}

/// Named numbers from every component, in name order.
#[derive(Clone, Debug, Default)]
pub struct Gauges {
    values: BTreeMap<&'static str, u64>,
    meta: BTreeMap<&'static str, Meta>,
}

impl Gauges {
    pub fn new() -> Gauges {
        Gauges::default()
    }

    fn put(&mut self, name: &'static str, value: u64, meta: Meta) {
        self.values.insert(name, value);
        self.meta.insert(name, meta);
    }

    /// A number that goes up and down.
    pub fn gauge(&mut self, name: &'static str, value: u64, help: &'static str) {
        let meta = Meta {
            kind: Kind::Gauge,
            help,
            names_variant: false,
        };
        self.put(name, value, meta);
    }

    /// A number that only goes up.
    pub fn counter(&mut self, name: &'static str, value: u64, help: &'static str) {
        let meta = Meta {
            kind: Kind::Counter,
            help,
            names_variant: false,
        };
        self.put(name, value, meta);
    }

    /// A gauge whose name tells which variant runs (hidden in mystery mode).
    pub fn variant_gauge(&mut self, name: &'static str, value: u64, help: &'static str) {
        let meta = Meta {
            kind: Kind::Gauge,
            help,
            names_variant: true,
        };
        self.put(name, value, meta);
    }

    /// One value by name.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.values.get(name).copied()
    }

    /// Every number with its description, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64, Meta)> + '_ {
        self.values
            .iter()
            .map(|(name, value)| (*name, *value, self.meta[name]))
    }

    /// Drops the gauges whose names give the variant away.
    pub fn without_variant_names(mut self) -> Gauges {
        let hidden: Vec<&'static str> = self
            .meta
            .iter()
            .filter(|(_, m)| m.names_variant)
            .map(|(n, _)| *n)
            .collect();
        for name in hidden {
            self.values.remove(name);
            self.meta.remove(name);
        }
        self
    }
}

/// Serialised as the plain `name: value` map `/debug/memory` has always had.
impl Serialize for Gauges {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.values.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names_can_be_hidden_and_json_stays_a_map() {
        let mut g = Gauges::new();
        g.gauge("cache_entries", 3, "entries");
        g.variant_gauge("cache_unbounded_entries", 3, "entries of the leaky map");
        g.counter("cache_hits", 7, "hits");
        assert_eq!(
            serde_json::to_string(&g).unwrap(),
            r#"{"cache_entries":3,"cache_hits":7,"cache_unbounded_entries":3}"#
        );
        let public = g.without_variant_names();
        assert_eq!(public.get("cache_unbounded_entries"), None);
        assert_eq!(public.iter().count(), 2);
    }
}
