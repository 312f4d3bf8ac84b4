//! Exit codes, the usage error (exit 2), and the one place an unknown
//! scenario id becomes one.
//!
//! Every stage and command reports bad input found after parsing (a remote
//! target without `--allow-remote`, an unknown scenario) as a [`UsageError`];
//! `loadgen::main` maps it to [`exit::USAGE`].

use leaklab_model::{Catalogue, Scenario, UnknownScenario};

/// Exit codes (docs/interfaces.md).
pub mod exit {
    pub const NO_LEAK: u8 = 0;
    pub const COULD_NOT_RUN: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const LEAK: u8 = 3;
    /// `hunt`: leaks found, but the floor still climbs after the fix.
    pub const FIX_NOT_PROVEN: u8 = 4;
    /// `grade`: the answer misses a leak or names one that is not on.
    pub const ANSWER_WRONG: u8 = 5;
}

/// A usage error found after parsing (bad target, unknown scenario): exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl From<UnknownScenario> for UsageError {
    fn from(e: UnknownScenario) -> UsageError {
        UsageError(e.to_string())
    }
}

/// The catalogue entry `id`, or a usage error that lists the known ids.
pub fn find_scenario<'a>(catalogue: &'a Catalogue, id: &str) -> Result<&'a Scenario, UsageError> {
    Ok(catalogue.find(id)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_model::{LeakClass, Step};

    #[test]
    fn an_unknown_scenario_is_a_usage_error_naming_the_known_ones() {
        let cat = Catalogue(vec![Scenario::new(
            "churn",
            LeakClass::Churn,
            "churn",
            vec![Step::get("/churn/{key}")],
        )]);
        assert_eq!(find_scenario(&cat, "churn").unwrap().id, "churn");
        let err = find_scenario(&cat, "nope").unwrap_err().to_string();
        assert!(
            err.contains("unknown scenario") && err.contains("churn"),
            "{err}"
        );
    }
}
