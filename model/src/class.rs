//! The leak classes: what a scenario's signals look like, and what a verdict
//! calls them. Serialised as kebab-case strings (`task-leak`), the names every
//! JSON document uses.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A verdict class. The first six are leaks; `churn` and `bounded` are the
/// shapes that look like one and are not; `none` is a verdict with nothing to
/// classify (a flat run, or too few samples).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum LeakClass {
    /// Live heap (`allocated`) and RSS climb; tasks flat.
    Retention,
    /// Alive tokio tasks climb, with the heap they pin.
    TaskLeak,
    /// RSS climbs while the allocator's `allocated` stays flat.
    OffHeap,
    /// RSS stays at a spike's peak while `allocated` falls back.
    RssRetained,
    /// Rose once to a high-water mark that stays, then flat.
    Plateau,
    /// Resident memory climbs, and without the allocator's statistics (a
    /// target that is not a leaklab service) retention and off-heap memory
    /// cannot be told apart.
    RssGrowth,
    /// Allocation rate only; the `allocated` floor is flat (no leak).
    Churn,
    /// Rises to a ceiling, then flat (no leak).
    Bounded,
    /// Nothing to classify.
    #[default]
    None,
}

impl LeakClass {
    /// Every class, leaks first.
    pub const ALL: [LeakClass; 9] = [
        LeakClass::Retention,
        LeakClass::TaskLeak,
        LeakClass::OffHeap,
        LeakClass::RssRetained,
        LeakClass::Plateau,
        LeakClass::RssGrowth,
        LeakClass::Churn,
        LeakClass::Bounded,
        LeakClass::None,
    ];

    /// The kebab-case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            LeakClass::Retention => "retention",
            LeakClass::TaskLeak => "task-leak",
            LeakClass::OffHeap => "off-heap",
            LeakClass::RssRetained => "rss-retained",
            LeakClass::Plateau => "plateau",
            LeakClass::RssGrowth => "rss-growth",
            LeakClass::Churn => "churn",
            LeakClass::Bounded => "bounded",
            LeakClass::None => "none",
        }
    }

    /// Whether this class is a leak (memory that does not come back).
    pub fn is_leak(self) -> bool {
        match self {
            LeakClass::Retention
            | LeakClass::TaskLeak
            | LeakClass::OffHeap
            | LeakClass::RssRetained
            | LeakClass::Plateau
            | LeakClass::RssGrowth => true,
            LeakClass::Churn | LeakClass::Bounded | LeakClass::None => false,
        }
    }
}

impl fmt::Display for LeakClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a class.
#[derive(Debug, thiserror::Error)]
#[error("unknown leak class `{0}` (retention, task-leak, off-heap, rss-retained, plateau, rss-growth, churn, bounded, none)")]
pub struct UnknownClass(pub String);

impl FromStr for LeakClass {
    type Err = UnknownClass;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LeakClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownClass(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_trip_through_their_json_names() {
        for class in LeakClass::ALL {
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{}\"", class.as_str()));
            assert_eq!(serde_json::from_str::<LeakClass>(&json).unwrap(), class);
            assert_eq!(class.as_str().parse::<LeakClass>().unwrap(), class);
        }
        assert!("leak".parse::<LeakClass>().is_err());
        assert!(LeakClass::TaskLeak.is_leak() && !LeakClass::Churn.is_leak());
    }
}
