//! `loadgen grade`: grades an answer to a mystery (`leaklab-service
//! --mystery SEED`) and reveals it. The answer is scenario ids or
//! `component:class` pairs (`cache:retention`), or a hunt's JSON
//! (`loadgen hunt --json`), whose findings are the answer. The key is drawn
//! again from the seed with the same draw the service made
//! (`leaklab_model::mystery::draw`), over the service binary's catalogue.
//!
//! Exit codes: 0 the answer is right and complete, 5 it is not, 2 bad usage,
//! 1 could not run.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use leaklab_model::hunt::HuntReport;
use leaklab_model::mystery::{draw, grade, Entry, Grade};
use leaklab_model::Catalogue;

use crate::errors::{exit, UsageError};
use crate::target::spawn;

/// Options of `loadgen grade`.
#[derive(Args, Clone, Debug)]
pub struct GradeOpts {
    /// The mystery's seed (what `leaklab-service --mystery SEED` was given).
    #[arg(long, value_name = "SEED")]
    pub mystery: u64,
    /// Your answer: scenario ids or component:class pairs, comma-separated or
    /// repeated (`--answer cache:retention --answer task-leak`). `none` (or no
    /// answer at all) says no leak is on.
    #[arg(long, value_delimiter = ',', value_name = "ID|COMPONENT:CLASS")]
    pub answer: Vec<String>,
    /// A hunt's JSON (`loadgen hunt --blind --json > hunt.json`): its findings
    /// are the answer (each finding's scenario, or its component:class).
    #[arg(long, value_name = "FILE", conflicts_with = "answer")]
    pub answer_file: Option<PathBuf>,
    /// The catalogue JSON (`leaklab-service scenarios --json`); default: ask
    /// the service binary.
    #[arg(long, value_name = "FILE")]
    pub catalogue: Option<PathBuf>,
    /// Print the `leaklab.grade/v1` JSON on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// The answer items a hunt's report gives.
pub fn answer_of(report: &HuntReport) -> Vec<String> {
    report
        .findings
        .iter()
        .map(|f| match (&f.scenario, &f.component) {
            (Some(id), _) => id.clone(),
            (None, Some(component)) => format!("{component}:{}", f.class),
            (None, None) => format!("?:{}", f.class),
        })
        .collect()
}

fn answer(opts: &GradeOpts) -> Result<Vec<String>> {
    let items = match &opts.answer_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let report: HuntReport = serde_json::from_str(&text)
                .map_err(|e| UsageError(format!("{} is not a hunt's JSON: {e}", path.display())))?;
            answer_of(&report)
        }
        None => opts.answer.clone(),
    };
    Ok(items
        .into_iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty() && a != "none")
        .collect())
}

fn catalogue(opts: &GradeOpts) -> Result<Catalogue> {
    match &opts.catalogue {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Ok(serde_json::from_str(&text)
                .map_err(|e| UsageError(format!("{} is not a catalogue: {e}", path.display())))?)
        }
        None => spawn::catalogue_blocking(),
    }
}

/// Grades `answer` against `seed` over `catalogue`.
pub fn grade_answer(seed: u64, catalogue: &Catalogue, answer: &[String]) -> Grade {
    let ids = |leak: bool| -> Vec<&str> {
        catalogue
            .iter()
            .filter(|s| s.class.is_leak() == leak)
            .map(|s| s.id.as_str())
            .collect()
    };
    let mystery = draw(seed, &ids(true), &ids(false));
    let entries: Vec<Entry<'_>> = catalogue
        .iter()
        .map(|s| Entry {
            id: &s.id,
            component: &s.component,
            class: s.class.as_str(),
        })
        .collect();
    grade(&mystery, &entries, answer)
}

/// The grade for a person.
pub fn render(g: &Grade) -> String {
    use std::fmt::Write;
    let mut out = format!("mystery {}: {} answer(s)\n", g.seed, g.answers.len());
    for a in &g.answers {
        let what = match (a.outcome.as_str(), &a.matched) {
            ("correct", Some(id)) => format!("correct ({id})"),
            ("wrong-class", Some(id)) => format!("wrong class: the component's leak is {id}"),
            ("duplicate", Some(id)) => format!("names {id} again"),
            ("false-alarm", Some(id)) => format!("false alarm: {id} is not a leak that is on"),
            _ => "false alarm: names nothing that is on".to_owned(),
        };
        let _ = writeln!(out, "  {:<28} {what}", a.text);
    }
    for id in &g.missed {
        let _ = writeln!(out, "  missed {id}");
    }
    let _ = writeln!(
        out,
        "precision {:.0}%, recall {:.0}%: {}",
        g.precision * 100.0,
        g.recall * 100.0,
        if g.perfect {
            "right and complete"
        } else {
            "not right yet"
        }
    );
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    let _ = writeln!(
        out,
        "reveal: leaks on: {}; decoys (negative controls on): {}",
        list(&g.reveal.leaks),
        list(&g.reveal.decoys)
    );
    out
}

/// Runs `loadgen grade`.
pub fn execute(opts: &GradeOpts) -> Result<u8> {
    let answer = answer(opts)?;
    let catalogue = catalogue(opts)?;
    let g = grade_answer(opts.mystery, &catalogue, &answer);
    eprint!("{}", render(&g));
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&g)?);
    }
    Ok(if g.perfect {
        exit::NO_LEAK
    } else {
        exit::ANSWER_WRONG
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_model::hunt::{AfterFix, HuntFinding};
    use leaklab_model::{LeakClass, Scenario, Step};

    fn catalogue() -> Catalogue {
        let s = |id: &str, class, component: &str| {
            Scenario::new(id, class, component, vec![Step::get("/x/{key}")])
        };
        Catalogue(vec![
            s("unbounded-cache", LeakClass::Retention, "cache"),
            s("task-leak", LeakClass::TaskLeak, "fanout"),
            s("churn", LeakClass::Churn, "churn"),
        ])
    }

    #[test]
    fn the_key_is_the_services_draw_and_a_hunts_findings_are_an_answer() {
        let cat = catalogue();
        let seed = (0..100)
            .find(|s| grade_answer(*s, &cat, &[]).reveal.leaks.len() == 2)
            .unwrap();
        let g = grade_answer(seed, &cat, &["cache:retention".into(), "task-leak".into()]);
        assert!(g.perfect, "{}", render(&g));
        let finding = |scenario: Option<&str>, component: &str, class| HuntFinding {
            scenario: scenario.map(str::to_owned),
            class,
            component: Some(component.into()),
            signal: "allocated".into(),
            burn_rate_bytes_per_h: None,
            time_to_oom_s: None,
            artifact: None,
            why: String::new(),
            path: String::new(),
            route: None,
            evidence: Vec::new(),
        };
        let report = HuntReport {
            schema: "leaklab.hunt/v1".into(),
            leaks: vec![],
            findings: vec![
                finding(Some("task-leak"), "fanout", LeakClass::TaskLeak),
                finding(None, "cache", LeakClass::Retention),
            ],
            after_fix: AfterFix {
                leak: false,
                class: LeakClass::None,
                burn_rate_bytes_per_h: 0.0,
                alive_tasks_slope_per_s: 0.0,
            },
            report: String::new(),
            markdown: String::new(),
            elapsed_s: 0.0,
            blind: false,
            mystery_seed: None,
            fix_proven: None,
            notes: Vec::new(),
        };
        assert_eq!(answer_of(&report), ["task-leak", "cache:retention"]);
        let wrong = grade_answer(seed, &cat, &["churn".into()]);
        assert!(!wrong.perfect && render(&wrong).contains("missed"));
    }
}
