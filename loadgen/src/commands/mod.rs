//! The commands: each composes the stages before it (target, engine,
//! sampling, judging, artifacts, reports) and returns an exit code. `hunt`,
//! `canary` and `oom` start their runs with a [`run::RunPlan`] of their own.
//!
//! - [`run`]: `loadgen run`, and the run pipeline the others use.
//! - [`hunt`]: `loadgen hunt`, the capstone leak hunt end to end.
//! - [`canary`]: `loadgen canary`, a baseline and a canary side by side.
//! - [`oom`]: `loadgen oom`, a leak run under a memory limit to the kill.
//! - [`grade`]: `loadgen grade`, an answer to a mystery graded and revealed.
//! - [`judge`]: `loadgen judge`, a recorded `samples.jsonl` judged again.
//! - [`rules`]: `loadgen rules`, the judgement as Prometheus alerting rules.
//! - [`scenarios`]: `loadgen scenarios`, the target's catalogue.
//! - [`bench`]: `loadgen bench oha`, loadgen against oha at max rate.

pub mod bench;
pub mod canary;
pub mod grade;
pub mod hunt;
pub mod judge;
pub mod oom;
pub mod rules;
pub mod run;
pub mod scenarios;
