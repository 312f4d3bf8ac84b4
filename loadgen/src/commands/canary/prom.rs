//! `loadgen canary --prometheus URL --baseline-query Q --canary-query Q`:
//! the canary pair judged from Prometheus series instead of a run loadgen
//! drives itself: each side's series over `--since` (its first `--warmup`
//! left out), fitted and classified as `loadgen judge --prometheus` does,
//! then compared by the same rule as a live canary (the canary leaks and
//! its slope's 95% interval lies wholly above the baseline's and above zero).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use leaklab_model::Catalogue;

use super::CanaryOpts;
use crate::errors::{exit, UsageError};
use crate::judging::{self, canary, Judged};
use crate::target::prometheus::{self, Kind, RangeSeries};

/// One side: its query's single series, judged.
async fn side(
    opts: &CanaryOpts,
    url: &str,
    which: &str,
    query: &str,
) -> Result<(RangeSeries, Judged)> {
    let server = opts.access.target(url)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
    let start = now - opts.since.as_secs_f64();
    let mut series = prometheus::query_range(&server, query, start, now, opts.step)
        .await
        .with_context(|| format!("the {which}'s query"))?;
    match series.len() {
        1 => {}
        0 => bail!(UsageError(format!(
            "the {which}'s query `{query}` matched no series in the last {:?}",
            opts.since
        ))),
        n => {
            bail!(UsageError(format!(
            "the {which}'s query `{query}` matched {n} series ({}); narrow it to one with labels",
            series.iter().map(RangeSeries::display).collect::<Vec<_>>().join(", ")
        )))
        }
    }
    let s = series.remove(0);
    let name = s
        .labels
        .get("__name__")
        .cloned()
        .unwrap_or_else(|| query.to_owned());
    let samples = prometheus::samples(&s, Kind::of(&name), opts.warmup);
    let judged = judging::judge(&samples, &Catalogue::default(), opts.limit);
    Ok((s, judged))
}

/// Judges the pair; exit 3 on a regression.
pub async fn execute(opts: &CanaryOpts, url: &str) -> Result<u8> {
    let (Some(bq), Some(cq)) = (&opts.baseline_query, &opts.canary_query) else {
        bail!(UsageError(
            "--prometheus needs --baseline-query and --canary-query".into()
        ));
    };
    if opts.warmup >= opts.since {
        bail!(UsageError(format!(
            "--warmup ({:?}) leaves nothing of --since ({:?}) to judge",
            opts.warmup, opts.since
        )));
    }
    let (bs, b) = side(opts, url, "baseline", bq).await?;
    let (cs, c) = side(opts, url, "canary", cq).await?;
    let compared = canary::compare(&b.signals, &c.signals);
    let verdict = canary::judge(&b.verdict, &c.verdict, &compared);
    eprintln!(
        "baseline {} ({} points): {}; canary {} ({} points): {}",
        bs.display(),
        bs.points.len(),
        b.verdict.class,
        cs.display(),
        cs.points.len(),
        c.verdict.class
    );
    eprintln!(
        "{}: {}",
        if verdict.regression {
            "REGRESSION"
        } else {
            "no regression"
        },
        verdict.reasons.join("; ")
    );
    let report = serde_json::json!({
        "prometheus": url,
        "baseline": {"series": bs.display(), "points": bs.points.len(), "verdict": b.verdict},
        "canary": {"series": cs.display(), "points": cs.points.len(), "verdict": c.verdict},
        "compared": compared,
        "verdict": verdict,
    });
    std::fs::create_dir_all(&opts.out)?;
    std::fs::write(
        opts.out.join("canary-prometheus.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(if verdict.regression {
        exit::LEAK
    } else {
        exit::NO_LEAK
    })
}
