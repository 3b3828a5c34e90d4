//! Reading configuration from the environment, with errors that name the variable.
//!
//! Functions take an [`Env`] rather than reading `std::env` directly so configuration parsing is
//! unit-tested with a plain map.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::str::FromStr;
use std::time::Duration;

use crate::error::ConfigError;

/// A source of configuration variables.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Any map of names to values (tests, and the CLIs that build a configuration from flags).
impl<K, V, S> Env for HashMap<K, V, S>
where
    K: Borrow<str> + Hash + Eq,
    V: AsRef<str>,
    S: BuildHasher,
{
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).map(|v| v.as_ref().to_string())
    }
}

/// A variable that must be set and not blank; `hint` says what it is for.
pub fn required(
    env: &impl Env,
    var: &'static str,
    hint: &'static str,
) -> Result<String, ConfigError> {
    match env.var(var) {
        Some(value) if !value.trim().is_empty() => Ok(value.trim().to_string()),
        _ => Err(ConfigError::Missing { var, hint }),
    }
}

/// An optional variable; blank counts as unset.
pub fn optional(env: &impl Env, var: &str) -> Option<String> {
    env.var(var)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// An optional variable parsed with `FromStr`, `default` when unset.
pub fn parsed<T: FromStr>(
    env: &impl Env,
    var: &'static str,
    default: T,
    expected: &'static str,
) -> Result<T, ConfigError> {
    match optional(env, var) {
        None => Ok(default),
        Some(value) => value.parse().map_err(|_| ConfigError::Invalid {
            var,
            value,
            expected,
        }),
    }
}

/// A duration given in whole milliseconds, `default` when unset; zero is refused.
pub fn millis(
    env: &impl Env,
    var: &'static str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let ms: u64 = parsed(
        env,
        var,
        default.as_millis() as u64,
        "a positive number of milliseconds",
    )?;
    if ms == 0 {
        return Err(ConfigError::Invalid {
            var,
            value: "0".into(),
            expected: "a positive number of milliseconds",
        });
    }
    Ok(Duration::from_millis(ms))
}

/// A duration given in whole seconds, `default` when unset; zero is refused.
pub fn seconds(
    env: &impl Env,
    var: &'static str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let s: u64 = parsed(env, var, default.as_secs(), "a positive number of seconds")?;
    if s == 0 {
        return Err(ConfigError::Invalid {
            var,
            value: "0".into(),
            expected: "a positive number of seconds",
        });
    }
    Ok(Duration::from_secs(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_names_the_variable() {
        let env = HashMap::from([("BLANK", "  ")]);
        let err = required(&env, "BLANK", "the thing").unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable BLANK is not set (the thing)"
        );
        assert!(required(&env, "ABSENT", "x").is_err());
    }

    #[test]
    fn parsed_reports_value_and_expectation() {
        let env = HashMap::from([("N", "ten")]);
        let err = parsed(&env, "N", 1u32, "a whole number").unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable N=\"ten\" is invalid: expected a whole number"
        );
        assert_eq!(parsed(&env, "UNSET", 7u32, "x").unwrap(), 7);
    }

    #[test]
    fn durations_refuse_zero() {
        let env = HashMap::from([("MS", "0"), ("S", "30")]);
        assert!(millis(&env, "MS", Duration::from_secs(1)).is_err());
        assert_eq!(
            seconds(&env, "S", Duration::ZERO).unwrap(),
            Duration::from_secs(30)
        );
    }
}
