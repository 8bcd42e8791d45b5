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
