//! Binary search for the first bad release, measuring as few as possible.
//!
//! Releases are ordered; once a leak ships it stays (the usual bisect
//! assumption). The search measures the newest release first: if it is good
//! there is nothing to find. Otherwise it halves the range `[0, newest]`, so a
//! run measures at most `ceil(log2 N) + 1` releases.

use anyhow::Result;

/// The outcome of a search: the first bad index (if any) and what was measured, in order.
#[derive(Debug, PartialEq, Eq)]
pub struct Search {
    pub first_bad: Option<usize>,
    pub measured: Vec<usize>,
}

/// Finds the first index in `0..n` for which `is_bad` holds.
pub fn first_bad(n: usize, mut is_bad: impl FnMut(usize) -> Result<bool>) -> Result<Search> {
    let mut measured = Vec::new();
    if n == 0 {
        return Ok(Search {
            first_bad: None,
            measured,
        });
    }
    let mut measure = |i: usize, measured: &mut Vec<usize>| {
        measured.push(i);
        is_bad(i)
    };
    if !measure(n - 1, &mut measured)? {
        return Ok(Search {
            first_bad: None,
            measured,
        });
    }
    let (mut lo, mut hi) = (0, n - 1); // hi is known bad
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if measure(mid, &mut measured)? {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(Search {
        first_bad: Some(hi),
        measured,
    })
}

/// `ceil(log2 n) + 1`, the most measurements a search of `n` releases makes.
pub fn max_measurements(n: usize) -> usize {
    if n <= 1 {
        return n;
    }
    (usize::BITS - (n - 1).leading_zeros()) as usize + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_first_bad_position_is_found_within_the_measurement_bound() {
        for n in 1..=17 {
            for bad_from in 0..=n {
                let search = first_bad(n, |i| Ok(i >= bad_from)).unwrap();
                let expected = (bad_from < n).then_some(bad_from);
                assert_eq!(search.first_bad, expected, "n={n} bad_from={bad_from}");
                assert!(
                    search.measured.len() <= max_measurements(n),
                    "n={n}: {:?}",
                    search.measured
                );
                let mut unique = search.measured.clone();
                unique.sort();
                unique.dedup();
                assert_eq!(
                    unique.len(),
                    search.measured.len(),
                    "a release was measured twice"
                );
            }
        }
    }

    #[test]
    fn the_bound_is_ceil_log2_plus_one() {
        assert_eq!(max_measurements(8), 4);
        assert_eq!(max_measurements(9), 5);
        assert_eq!(max_measurements(2), 2);
        assert_eq!(max_measurements(1), 1);
    }
}
