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

/// `leaklab.grade/v1`: an answer to a mystery, graded.
pub const GRADE_SCHEMA: &str = "leaklab.grade/v1";

/// One answer item: a scenario id, or `component:class` as a hunt that does
/// not know the catalogue's ids would say it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerItem {
    /// As given.
    pub text: String,
    /// The scenario it was matched to, if any.
    pub matched: Option<String>,
    /// `correct`, `false-alarm` (names no scenario that is on, or names a
    /// negative control), `wrong-class` (the right component, another class)
    /// or `duplicate`.
    pub outcome: String,
}

/// The grade.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grade {
    pub schema: String,
    pub seed: u64,
    pub answers: Vec<AnswerItem>,
    /// Leaks that were on and that no answer named.
    pub missed: Vec<String>,
    /// Correct answers over all answers (1 when there were none).
    pub precision: f64,
    /// Leaks found over leaks on (1 when none was on).
    pub recall: f64,
    /// Right and complete: every leak named, nothing else.
    pub perfect: bool,
    /// The answer key.
    pub reveal: Mystery,
}

/// What grading needs to know of one scenario.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    pub id: &'a str,
    pub component: &'a str,
    pub class: &'a str,
}

/// Grades `answers` against `mystery`. `catalogue` maps ids to their
/// component and class, so `cache:retention` counts as naming
/// `unbounded-cache`.
pub fn grade(mystery: &Mystery, catalogue: &[Entry<'_>], answers: &[String]) -> Grade {
    let on: Vec<&str> = mystery.leaks.iter().map(String::as_str).collect();
    let mut found: Vec<&str> = Vec::new();
    let mut items = Vec::new();
    for text in answers {
        let t = text.trim();
        let named: Vec<&Entry<'_>> = match t.split_once(':') {
            Some((component, class)) => catalogue
                .iter()
                .filter(|e| e.component == component && e.class == class)
                .collect(),
            None => catalogue.iter().filter(|e| e.id == t).collect(),
        };
        // Prefer a scenario that is on and not yet found.
        let hit = named
            .iter()
            .find(|e| on.contains(&e.id) && !found.contains(&e.id))
            .map(|e| e.id);
        let (matched, outcome) = if let Some(id) = hit {
            found.push(id);
            (Some(id.to_owned()), "correct")
        } else if let Some(e) = named.iter().find(|e| found.contains(&e.id)) {
            (Some(e.id.to_owned()), "duplicate")
        } else if let Some((component, _)) = t.split_once(':') {
            let same_component = catalogue
                .iter()
                .find(|e| e.component == component && on.contains(&e.id) && !found.contains(&e.id));
            match same_component {
                Some(e) => (Some(e.id.to_owned()), "wrong-class"),
                None => (None, "false-alarm"),
            }
        } else {
            (named.first().map(|e| e.id.to_owned()), "false-alarm")
        };
        items.push(AnswerItem {
            text: t.to_owned(),
            matched,
            outcome: outcome.to_owned(),
        });
    }
    let missed: Vec<String> = on
        .iter()
        .filter(|id| !found.contains(id))
        .map(|id| id.to_string())
        .collect();
    let scored = items.iter().filter(|i| i.outcome != "duplicate").count();
    let correct = found.len();
    let precision = if scored == 0 {
        1.0
    } else {
        correct as f64 / scored as f64
    };
    let recall = if on.is_empty() {
        1.0
    } else {
        correct as f64 / on.len() as f64
    };
    Grade {
        schema: GRADE_SCHEMA.to_owned(),
        seed: mystery.seed,
        perfect: missed.is_empty() && correct == scored,
        answers: items,
        missed,
        precision,
        recall,
        reveal: mystery.clone(),
    }
}

#[cfg(test)]
mod grade_tests {
    use super::*;

    const CATALOGUE: [Entry<'static>; 4] = [
        Entry {
            id: "unbounded-cache",
            component: "cache",
            class: "retention",
        },
        Entry {
            id: "task-leak",
            component: "fanout",
            class: "task-leak",
        },
        Entry {
            id: "bounded-cache",
            component: "cache",
            class: "bounded",
        },
        Entry {
            id: "churn",
            component: "churn",
            class: "churn",
        },
    ];

    fn mystery() -> Mystery {
        Mystery {
            seed: 9,
            leaks: vec!["unbounded-cache".into(), "task-leak".into()],
            decoys: vec!["churn".into()],
        }
    }

    #[test]
    fn misses_false_alarms_and_wrong_classes_are_counted() {
        let answers = vec![
            "cache:retention".to_owned(),
            "fanout:retention".to_owned(),
            "churn".to_owned(),
        ];
        let g = grade(&mystery(), &CATALOGUE, &answers);
        let outcomes: Vec<&str> = g.answers.iter().map(|a| a.outcome.as_str()).collect();
        assert_eq!(outcomes, ["correct", "wrong-class", "false-alarm"]);
        assert_eq!(g.missed, ["task-leak"]);
        assert!((g.precision - 1.0 / 3.0).abs() < 1e-9 && (g.recall - 0.5).abs() < 1e-9);
        assert!(!g.perfect);
    }

    #[test]
    fn a_complete_answer_is_perfect_and_an_empty_mystery_wants_no_answer() {
        let answers = vec!["task-leak".to_owned(), "unbounded-cache".to_owned()];
        assert!(grade(&mystery(), &CATALOGUE, &answers).perfect);
        let empty = Mystery {
            seed: 1,
            leaks: vec![],
            decoys: vec!["churn".into()],
        };
        assert!(grade(&empty, &CATALOGUE, &[]).perfect);
        let alarm = grade(&empty, &CATALOGUE, &["churn".to_owned()]);
        assert!(!alarm.perfect && alarm.precision == 0.0 && alarm.recall == 1.0);
    }
}
