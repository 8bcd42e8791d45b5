//! How many requests a sink keeps in flight: `request.concurrency = N` (fixed) or
//! `"adaptive"`.
//!
//! The adaptive limit is additive-increase / multiplicative-decrease on the round-trip time
//! and on throttling, after the idea of Vector's adaptive request concurrency and of TCP
//! congestion control. It starts at one request. Responses are gathered in windows of about
//! one smoothed round-trip time; at the end of a window:
//! - if a response said "slow down" (HTTP 429, 503, a timeout) or the window's mean RTT rose
//!   above the smoothed RTT plus twice its mean deviation, the limit is multiplied by 0.9
//!   (rounded down, at least 1): the destination is saturated;
//! - otherwise, if the limit was reached during the window, it grows by one.
//!
//! Invariant: at most `limit` permits are out at once, except just after a decrease, when the
//! requests already in flight finish and no new one starts until the count is below the
//! limit. A sink that waits for a permit does not read its input, which is how a slow
//! destination slows the source.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

use prometheus_client::metrics::gauge::Gauge;

/// `request.concurrency`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum Concurrency {
    Fixed(usize),
    #[default]
    Adaptive,
}

impl<'de> Deserialize<'de> for Concurrency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Concurrency;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a number of requests (1 or more) or "adaptive""#)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Concurrency, E> {
                match usize::try_from(v) {
                    Ok(n) if n >= 1 => Ok(Concurrency::Fixed(n)),
                    _ => Err(E::custom(format!("concurrency must be 1 or more, not {v}"))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Concurrency, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Concurrency, E> {
                match v {
                    "adaptive" => Ok(Concurrency::Adaptive),
                    other => Err(E::custom(format!(
                        r#"unknown concurrency "{other}": use a number or "adaptive""#
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Multiplier applied to the limit when the destination pushes back.
const DECREASE_RATIO: f64 = 0.9;
/// Weight of a new window in the smoothed RTT.
const EWMA_ALPHA: f64 = 0.3;

#[derive(Debug)]
struct State {
    limit: usize,
    in_flight: usize,
    // Adaptive bookkeeping.
    srtt: Option<f64>,
    rttvar: f64,
    window_start: Instant,
    window_sum: f64,
    window_count: u32,
    window_throttled: bool,
    window_reached_limit: bool,
}

/// Hands out request permits within the current limit.
pub struct Limiter {
    state: Mutex<State>,
    notify: Notify,
    /// `Some(max)` when adaptive.
    adaptive_max: Option<usize>,
    limit_gauge: Gauge,
    in_flight_gauge: Gauge,
}

/// The right to have one request in flight. Dropping it frees the slot.
pub struct Permit {
    limiter: Arc<Limiter>,
}

impl Limiter {
    pub fn new(
        concurrency: Concurrency,
        adaptive_max: usize,
        limit: Gauge,
        in_flight: Gauge,
    ) -> Arc<Self> {
        let (start, adaptive_max) = match concurrency {
            Concurrency::Fixed(n) => (n.max(1), None),
            Concurrency::Adaptive => (1, Some(adaptive_max.max(1))),
        };
        limit.set(start as i64);
        Arc::new(Self {
            state: Mutex::new(State {
                limit: start,
                in_flight: 0,
                srtt: None,
                rttvar: 0.0,
                window_start: Instant::now(),
                window_sum: 0.0,
                window_count: 0,
                window_throttled: false,
                window_reached_limit: false,
            }),
            notify: Notify::new(),
            adaptive_max,
            limit_gauge: limit,
            in_flight_gauge: in_flight,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// Waits for a free slot.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registers interest before checking, so a release between the check and the
            // wait is not missed.
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if s.in_flight < s.limit {
                    s.in_flight += 1;
                    if s.in_flight >= s.limit {
                        s.window_reached_limit = true;
                    }
                    self.in_flight_gauge.set(s.in_flight as i64);
                    return Permit { limiter: Arc::clone(self) };
                }
            }
            notified.await;
        }
    }

    /// Records one response: its round-trip time and whether the destination pushed back.
    pub fn record(&self, rtt: Duration, throttled: bool) {
        let Some(max) = self.adaptive_max else { return };
        let mut s = self.lock();
        let now = Instant::now();
        let rtt = rtt.as_secs_f64();
        s.window_sum += rtt;
        s.window_count += 1;
        s.window_throttled |= throttled;
        let window = s.srtt.unwrap_or(rtt).max(0.001);
        if now.duration_since(s.window_start).as_secs_f64() < window && !s.window_throttled {
            return;
        }
        let mean = s.window_sum / f64::from(s.window_count.max(1));
        let slower = s.srtt.is_some_and(|srtt| mean > srtt + 2.0 * s.rttvar + 0.001);
        let old = s.limit;
        if s.window_throttled || slower {
            s.limit = ((s.limit as f64 * DECREASE_RATIO) as usize).max(1);
        } else if s.window_reached_limit {
            s.limit = (s.limit + 1).min(max);
        }
        if !s.window_throttled {
            match s.srtt {
                None => s.srtt = Some(mean),
                Some(srtt) => {
                    s.rttvar = (1.0 - EWMA_ALPHA) * s.rttvar + EWMA_ALPHA * (mean - srtt).abs();
                    s.srtt = Some((1.0 - EWMA_ALPHA) * srtt + EWMA_ALPHA * mean);
                }
            }
        }
        s.window_start = now;
        s.window_sum = 0.0;
        s.window_count = 0;
        s.window_throttled = false;
        s.window_reached_limit = s.in_flight >= s.limit;
        if s.limit != old {
            self.limit_gauge.set(s.limit as i64);
            tracing::debug!(from = old, to = s.limit, "adaptive concurrency changed");
            if s.limit > old {
                drop(s);
                self.notify.notify_waiters();
            }
        }
    }
}

impl Permit {
    pub fn record(&self, rtt: Duration, throttled: bool) {
        self.limiter.record(rtt, throttled);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        {
            let mut s = self.limiter.lock();
            s.in_flight = s.in_flight.saturating_sub(1);
            self.limiter.in_flight_gauge.set(s.in_flight as i64);
        }
        self.limiter.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(c: Concurrency) -> Arc<Limiter> {
        Limiter::new(c, 16, Gauge::default(), Gauge::default())
    }

    #[test]
    fn config_values() {
        #[derive(Deserialize)]
        struct T {
            c: Concurrency,
        }
        let parse = |s: &str| toml_edit::de::from_str::<T>(s).map(|t| t.c);
        assert_eq!(parse("c = 4").unwrap(), Concurrency::Fixed(4));
        assert_eq!(parse("c = \"adaptive\"").unwrap(), Concurrency::Adaptive);
        assert!(parse("c = 0").is_err());
        assert!(parse("c = \"fast\"").unwrap_err().to_string().contains("adaptive"));
    }

    #[tokio::test(start_paused = true)]
    async fn fixed_limit_holds_the_third_request() {
        let l = limiter(Concurrency::Fixed(2));
        let a = l.acquire().await;
        let _b = l.acquire().await;
        let third = l.acquire();
        tokio::pin!(third);
        assert!(tokio::time::timeout(Duration::from_secs(10), &mut third).await.is_err());
        drop(a);
        let _c = tokio::time::timeout(Duration::from_secs(1), third).await.expect("freed slot");
    }

    #[tokio::test(start_paused = true)]
    async fn adaptive_grows_while_fast_and_shrinks_on_throttling() {
        let l = limiter(Concurrency::Adaptive);
        assert_eq!(l.limit(), 1);
        // Steady 50 ms responses with the limit in use: one step up per window.
        for _ in 0..40 {
            let permits: Vec<Permit> = {
                let mut v = Vec::new();
                for _ in 0..l.limit() {
                    v.push(l.acquire().await);
                }
                v
            };
            tokio::time::advance(Duration::from_millis(50)).await;
            for p in &permits {
                p.record(Duration::from_millis(50), false);
            }
        }
        let grown = l.limit();
        assert!(grown >= 10, "limit grew only to {grown}");
        assert!(grown <= 16, "limit passed its maximum: {grown}");
        // A 429 in the window: multiplicative decrease.
        let p = l.acquire().await;
        tokio::time::advance(Duration::from_millis(50)).await;
        p.record(Duration::from_millis(50), true);
        assert_eq!(l.limit(), (grown as f64 * 0.9) as usize);
        drop(p);
        // Latency that doubles is read as saturation too.
        let before = l.limit();
        for _ in 0..3 {
            let p = l.acquire().await;
            tokio::time::advance(Duration::from_millis(200)).await;
            p.record(Duration::from_millis(200), false);
        }
        assert!(l.limit() < before, "limit {} did not fall from {before}", l.limit());
    }
}
