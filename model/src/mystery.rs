//! Mystery mode's draw: which leaks a seed turns on. The service draws from
//! it when started with `--mystery SEED`; `loadgen grade` draws again to
//! reveal the answer. Both must agree forever, so the generator is written
//! out here (SplitMix64, a fixed published algorithm) rather than taken from
//! a crate whose streams may change between versions.

use serde::{Deserialize, Serialize};

/// What a seed turned on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mystery {
    pub seed: u64,
    /// 0 to 3 leak scenarios, in catalogue order.
    pub leaks: Vec<String>,
    /// Negative controls turned on beside them (0 or 1): shapes that look
    /// like a leak and are not.
    pub decoys: Vec<String>,
}

/// SplitMix64 (Steele, Lea and Flood, 2014).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (n > 0); the modulo bias is negligible for small n.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `k` distinct items of `from`, kept in `from`'s order.
fn pick(rng: &mut SplitMix64, from: &[&str], k: usize) -> Vec<String> {
    let mut idx: Vec<usize> = (0..from.len()).collect();
    let k = k.min(idx.len());
    for i in 0..k {
        let j = i + rng.below(idx.len() - i);
        idx.swap(i, j);
    }
    let mut chosen = idx[..k].to_vec();
    chosen.sort_unstable();
    chosen.into_iter().map(|i| from[i].to_owned()).collect()
}

/// Draws the mystery for `seed`: how many leaks (0: 15%, 1: 35%, 2: 35%,
/// 3: 15%), which ones, and whether a negative control rides along (30%).
/// `leaks` and `controls` are ids in catalogue order.
pub fn draw(seed: u64, leaks: &[&str], controls: &[&str]) -> Mystery {
    let mut rng = SplitMix64(seed);
    let count = match rng.below(20) {
        0..=2 => 0,
        3..=9 => 1,
        10..=16 => 2,
        _ => 3,
    };
    let chosen = pick(&mut rng, leaks, count);
    let decoys = if !controls.is_empty() && rng.below(10) < 3 {
        pick(&mut rng, controls, 1)
    } else {
        Vec::new()
    };
    Mystery {
        seed,
        leaks: chosen,
        decoys,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEAKS: [&str; 13] = [
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m",
    ];
    const CONTROLS: [&str; 3] = ["x", "y", "z"];

    #[test]
    fn a_seed_always_draws_the_same_and_the_mix_covers_every_count() {
        assert_eq!(draw(7, &LEAKS, &CONTROLS), draw(7, &LEAKS, &CONTROLS));
        let mut counts = [0usize; 4];
        let mut decoys = 0;
        for seed in 0..2000 {
            let m = draw(seed, &LEAKS, &CONTROLS);
            counts[m.leaks.len()] += 1;
            decoys += m.decoys.len();
            let mut sorted = m.leaks.clone();
            sorted.dedup();
            assert_eq!(sorted.len(), m.leaks.len(), "distinct leaks");
        }
        // 15/35/35/15% and 30% decoys, with room for chance.
        assert!((200..400).contains(&counts[0]), "{counts:?}");
        assert!((550..850).contains(&counts[1]), "{counts:?}");
        assert!((550..850).contains(&counts[2]), "{counts:?}");
        assert!((200..400).contains(&counts[3]), "{counts:?}");
        assert!((450..750).contains(&decoys), "{decoys}");
    }

    #[test]
    fn the_stream_is_splitmix64() {
        // First outputs for seed 0, as published with the algorithm.
        let mut rng = SplitMix64(0);
        assert_eq!(rng.next(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next(), 0x6E78_9E6A_A1B9_65F4);
    }
}
