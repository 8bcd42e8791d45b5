//! Telemetry as types: each internal event logs its line and bumps its counter in one place.
//!
//! Log lines about bad input are rate-limited per component ([`RateLimit`]): the first one is
//! logged at once, later ones at most every ten seconds with the number suppressed in between,
//! so a stream of malformed lines cannot flood weir's own log. Counters are never limited.
//! ERROR is for data loss or what needs an operator; WARN for input weir could not use.

use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

use crate::metrics::ComponentMetrics;

/// Limits how often a repeated log line is written.
#[derive(Debug)]
pub struct RateLimit {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self { interval: Duration::from_secs(10), last: None, suppressed: 0 }
    }
}

impl RateLimit {
    /// `Some(suppressed_since_last)` when a line may be logged now.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// A parser could not parse an event's field. The event is kept (see `transforms::parse`).
pub struct ParseFailed {
    counter: Counter,
    limit: RateLimit,
    component: String,
}

impl ParseFailed {
    pub fn new(metrics: &ComponentMetrics) -> Self {
        Self {
            counter: metrics.error_counter(
                crate::metrics::error_type::PARSE_FAILED,
                crate::metrics::Stage::Processing,
            ),
            limit: RateLimit::default(),
            component: metrics.id().to_string(),
        }
    }

    pub fn emit(&mut self, reason: &str) {
        self.counter.inc();
        if let Some(suppressed) = self.limit.allow() {
            tracing::warn!(
                component = %self.component,
                reason,
                suppressed,
                "could not parse event; it continues with an error.message field"
            );
        }
    }
}

/// A VRL condition or program failed at run time.
pub struct ProgramFailed {
    counter: Counter,
    limit: RateLimit,
    component: String,
}

impl ProgramFailed {
    pub fn new(metrics: &ComponentMetrics) -> Self {
        Self {
            counter: metrics.error_counter(
                crate::metrics::error_type::PROGRAM_FAILED,
                crate::metrics::Stage::Processing,
            ),
            limit: RateLimit::default(),
            component: metrics.id().to_string(),
        }
    }

    pub fn emit(&mut self, reason: &str) {
        self.counter.inc();
        if let Some(suppressed) = self.limit.allow() {
            tracing::warn!(component = %self.component, reason, suppressed, "VRL program failed on an event");
        }
    }
}

/// Events a component discarded on purpose, counted by reason (no log line: it is intended).
pub struct EventsDiscarded {
    counter: Counter,
}

impl EventsDiscarded {
    pub fn new(metrics: &ComponentMetrics, reason: &str) -> Self {
        Self { counter: metrics.discarded_counter(reason) }
    }

    pub fn emit(&self, count: usize) {
        if count > 0 {
            self.counter.inc_by(count as u64);
        }
    }
}

/// A line longer than `max_line_bytes` was cut or dropped.
pub struct LineTooLong {
    counter: Counter,
    limit: RateLimit,
    component: String,
}

impl LineTooLong {
    pub fn new(metrics: &ComponentMetrics, truncated: bool) -> Self {
        Self {
            counter: if truncated {
                metrics.error_counter(
                    crate::metrics::error_type::LINE_TRUNCATED,
                    crate::metrics::Stage::Receiving,
                )
            } else {
                metrics.discarded_counter(crate::metrics::discard_reason::LINE_TOO_LONG)
            },
            limit: RateLimit::default(),
            component: metrics.id().to_string(),
        }
    }

    pub fn emit(&mut self, what: &str, max: usize, action: &str) {
        self.counter.inc();
        if let Some(suppressed) = self.limit.allow() {
            tracing::warn!(
                component = %self.component,
                input = what,
                max_line_bytes = max,
                suppressed,
                "line longer than max_line_bytes was {action}"
            );
        }
    }
}
