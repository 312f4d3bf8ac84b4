//! The task-leak artifact: the service's task census (`/debug/tasks`, live
//! tasks by spawn site with ages), evidence that cannot wedge the service;
//! with `--await-dump`, tokio's await-point dump as an extra.

use std::path::Path;

use anyhow::{Context, Result};
use leaklab_model::run::Finding;
use leaklab_model::tasks::{SiteRow, TaskCensus};
use serde_json::Value;

use super::{fetch, Artifact};
use crate::target::Control;

/// Tasks whose traces the optional await-point dump resolves.
const TASK_DUMP_SAMPLE: usize = 500;

/// The await-point dump's text form, from its JSON: one block per await point.
pub fn render_await_dump(json: &Value) -> String {
    let mut text = format!(
        "WARNING: {}\n\nalive tasks: {}, traced: {}, resolved and grouped: {}\n\n",
        json["warning"].as_str().unwrap_or(""),
        json["alive_tasks"],
        json["traced"],
        json["grouped"]
    );
    for g in json["groups"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "{} task(s) at {}\n{}\n\n",
            g["count"],
            g["await_point"].as_str().unwrap_or("?"),
            g["trace"].as_str().unwrap_or("")
        ));
    }
    text
}

/// The task census (live tasks by spawn site, with ages): evidence that
/// cannot wedge the service. With `--await-dump`, tokio's await-point dump
/// as an extra; its failure only costs the extra.
pub async fn task_artifact(
    control: &Control,
    out: &Path,
    f: &Finding,
    await_dump: bool,
) -> Result<Artifact> {
    let census: TaskCensus =
        serde_json::from_slice(&fetch(control, "/debug/tasks?format=json").await?)
            .context("the task census (/debug/tasks?format=json)")?;
    std::fs::write(out.join("tasks.json"), serde_json::to_vec_pretty(&census)?)?;
    let path = out.join("tasks.txt");
    std::fs::write(&path, fetch(control, "/debug/tasks").await?)?;
    let top = census.sites.first().cloned().unwrap_or_else(|| SiteRow {
        site: "?".into(),
        alive: 0,
        spawned: 0,
        finished: 0,
        oldest_s: 0.0,
        median_age_s: 0.0,
    });
    let site = &top.site;
    eprintln!(
        "        task census -> {}: {} of {} alive tasks were spawned at {site} ({} of {} finished; oldest {:.0} s)",
        path.display(),
        top.alive,
        census.alive_tasks,
        top.finished,
        top.spawned,
        top.oldest_s,
    );
    if await_dump {
        let path = format!("/debug/tasks?mode=await&format=json&limit={TASK_DUMP_SAMPLE}");
        match fetch(control, &path)
            .await
            .and_then(|b| Ok(serde_json::from_slice::<Value>(&b)?))
        {
            Ok(dump) => {
                let file = out.join("tasks-await.txt");
                std::fs::write(&file, render_await_dump(&dump))?;
                eprintln!(
                    "        await-point dump (extra) -> {}: top group waits at {}",
                    file.display(),
                    dump["groups"][0]["await_point"].as_str().unwrap_or("?")
                );
            }
            Err(err) => eprintln!("        await-point dump (extra) failed: {err:#}"),
        }
    }
    Ok(Artifact {
        file: Some(path),
        path: format!(
            "{}: alive tasks climb {:.1}/s; {} tasks spawned at {site} are alive, {} of {} finished, the oldest {:.0} s old: each holds what its future captured",
            f.component.as_deref().unwrap_or("?"),
            f.slope_per_s,
            top.alive,
            top.finished,
            top.spawned,
            top.oldest_s,
        ),
    })
}
