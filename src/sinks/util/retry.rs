//! Retries with capped exponential backoff and full jitter.
//!
//! The n-th retry (from 0) waits a random time between zero and
//! `min(max_backoff, initial_backoff * 2^n)` ("full jitter"), so that many sinks retrying
//! against one recovering server do not arrive in step. By default a sink retries for as long
//! as weir runs: events that cannot be sent hold their batch, the batch holds its request
//! slot, and backpressure reaches the source. With `retry_attempts` set, a request that still
//! fails is given up loudly: its events are marked errored (the source reads them again after
//! a restart), an ERROR line is logged and `component_errors_total{error_type=
//! "retries_exhausted"}` is counted. A retry is never dropped silently.

use std::time::Duration;

use rand::Rng;
use serde::Deserialize;

use crate::error::ConfigIssue;

/// The backoff schedule of one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// Attempts after the first; `None` retries without end.
    pub max_retries: Option<u64>,
}

impl Backoff {
    /// The upper bound of the wait before retry `n` (0-based), before jitter.
    pub fn ceiling(&self, n: u32) -> Duration {
        let factor = 2u64.saturating_pow(n.min(40)) as f64;
        let secs = (self.initial.as_secs_f64() * factor).min(self.max.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }

    /// The wait before retry `n`: uniform in `[0, ceiling(n)]`.
    pub fn delay(&self, n: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(n).as_secs_f64();
        if ceiling <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(rng.random_range(0.0..=ceiling))
    }

    /// Whether retry number `n` (0-based) may still be made.
    pub fn allows(&self, n: u64) -> bool {
        self.max_retries.is_none_or(|m| n < m)
    }
}

/// `request` of a sink that sends one request at a time (the alerting and MLflow sinks): the
/// timeout and backoff of the batching sinks' `request` table, under the same names, without
/// concurrency. The batching sinks' table delegates its checks here; it repeats the fields
/// because serde's `flatten` cannot be combined with `deny_unknown_fields`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialRequestConfig {
    /// Time allowed for one request, response included. Default 30.
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
    /// First backoff ceiling. Default 1.
    #[serde(default = "default_initial_backoff")]
    pub retry_initial_backoff_secs: f64,
    /// Largest backoff ceiling. Default 30.
    #[serde(default = "default_max_backoff")]
    pub retry_max_duration_secs: f64,
    /// Retries after the first attempt; unset (the default) retries as long as weir runs.
    pub retry_attempts: Option<u64>,
}

fn default_timeout() -> f64 {
    30.0
}
fn default_initial_backoff() -> f64 {
    1.0
}
fn default_max_backoff() -> f64 {
    30.0
}

impl Default for SerialRequestConfig {
    fn default() -> Self {
        Self {
            timeout_secs: default_timeout(),
            retry_initial_backoff_secs: default_initial_backoff(),
            retry_max_duration_secs: default_max_backoff(),
            retry_attempts: None,
        }
    }
}

impl SerialRequestConfig {
    pub fn check(&self) -> Vec<ConfigIssue> {
        let secs_ok = |v: f64| v.is_finite() && v > 0.0 && v <= 86_400.0;
        [
            ("request.timeout_secs", self.timeout_secs),
            ("request.retry_initial_backoff_secs", self.retry_initial_backoff_secs),
            ("request.retry_max_duration_secs", self.retry_max_duration_secs),
        ]
        .into_iter()
        .filter(|(_, v)| !secs_ok(*v))
        .map(|(name, _)| {
            ConfigIssue::field(name, format!("{name} must be a number of seconds above 0"))
        })
        .collect()
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_secs.clamp(0.001, 86_400.0))
    }

    pub fn backoff(&self) -> Backoff {
        Backoff {
            initial: Duration::from_secs_f64(self.retry_initial_backoff_secs.clamp(0.0, 86_400.0)),
            max: Duration::from_secs_f64(self.retry_max_duration_secs.clamp(0.0, 86_400.0)),
            max_retries: self.retry_attempts,
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn exponential_capped_and_jittered() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            max_retries: Some(3),
        };
        let ceilings: Vec<u128> = (0..9).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(5));
        let mut rng = StdRng::seed_from_u64(7);
        let delays: Vec<Duration> = (0..200).map(|_| b.delay(6, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(5)));
        // Full jitter spreads over the whole range, not around the ceiling.
        assert!(delays.iter().any(|d| *d < Duration::from_secs(1)));
        assert!(delays.iter().any(|d| *d > Duration::from_secs(4)));
        assert!(b.allows(2) && !b.allows(3));
        assert!(Backoff { max_retries: None, ..b }.allows(u64::MAX - 1));
    }
}
