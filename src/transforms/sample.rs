//! `sample`: keeps one event in `rate`, to thin out high-volume streams.
//!
//! With `key_field`, the choice is a hash of that field, so all events of one request id are
//! kept or dropped together; without it, every `rate`-th event is kept. Events matching
//! `exclude` (a VRL condition, e.g. errors) are always kept. Dropped events are counted and
//! count as delivered.

use std::hash::{Hash, Hasher};

use serde::Deserialize;
use vrl::path::OwnedValuePath;

use super::vrl_program::{VrlProgram, VrlRunner};
use super::{Transform, TransformOutput};
use crate::component::TransformComponent;
use crate::error::ConfigIssue;
use crate::event::{Event, parse_path};
use crate::internal_events::EventsDiscarded;
use crate::metrics::ComponentMetrics;

/// `[transforms.<id>] type = "sample"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// Keep one event in this many (1 keeps all).
    pub rate: u64,
    /// Keep or drop by a hash of this field, so that all events of one value (a request id)
    /// are kept or dropped together. Default: every `rate`-th event.
    #[serde(default)]
    pub key_field: Option<String>,
    /// Events matching this VRL condition are never sampled out.
    #[serde(default)]
    pub exclude: Option<String>,
}

pub struct Sample {
    rate: u64,
    key: Option<OwnedValuePath>,
    exclude: Option<VrlRunner>,
    counter: u64,
    discarded: EventsDiscarded,
}

impl TransformComponent for SampleConfig {
    type Built = Sample;

    fn build(&self, metrics: &ComponentMetrics) -> Result<Sample, ConfigIssue> {
        if self.rate == 0 {
            return Err(ConfigIssue::field("rate", "must be at least 1"));
        }
        let key = self
            .key_field
            .as_deref()
            .map(parse_path)
            .transpose()
            .map_err(|e| ConfigIssue::field("key_field", e))?;
        let exclude = match &self.exclude {
            Some(src) => Some(VrlRunner::new(
                VrlProgram::compile(src, true).map_err(|e| ConfigIssue::field("exclude", e))?,
            )),
            None => None,
        };
        Ok(Sample {
            rate: self.rate,
            key,
            exclude,
            counter: 0,
            discarded: EventsDiscarded::new(metrics, crate::metrics::discard_reason::SAMPLED),
        })
    }
}

impl Transform for Sample {
    fn transform(&mut self, events: Vec<Event>, out: &mut TransformOutput) {
        let mut dropped = 0;
        for mut event in events {
            if let Some(ex) = &mut self.exclude
                && ex.check(&mut event).unwrap_or(false)
            {
                out.push(event);
                continue;
            }
            let keep = match &self.key {
                Some(path) => {
                    // FNV-style fixed hasher: the same key is kept on every weir instance.
                    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
                    match event.get(path) {
                        Some(v) => v.to_string_lossy().hash(&mut h),
                        None => 0u8.hash(&mut h),
                    }
                    h.finish().is_multiple_of(self.rate)
                }
                None => {
                    self.counter = self.counter.wrapping_add(1);
                    self.counter % self.rate == 1 % self.rate
                }
            };
            if keep {
                out.push(event);
            } else {
                dropped += 1;
            }
        }
        self.discarded.emit(dropped);
    }
}

/// 64-bit FNV-1a; stable across processes and versions, unlike `DefaultHasher`.
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::test_util::{metrics, run};

    #[test]
    fn keeps_one_in_rate_and_all_excluded() {
        let c: SampleConfig =
            toml_edit::de::from_str("rate = 10\nexclude = '.level == \"error\"'").unwrap();
        let mut s = c.build(&metrics()).unwrap();
        let mut events: Vec<Event> =
            (0..100).map(|i| Event::from_value(vrl::value!({"i": i}))).collect();
        events.extend((0..5).map(|_| Event::from_value(vrl::value!({"level": "error"}))));
        let (out, _) = run(&mut s, 0, events);
        assert_eq!(out.len(), 10 + 5);
    }

    #[test]
    fn key_field_keeps_or_drops_a_key_together() {
        let c: SampleConfig =
            toml_edit::de::from_str("rate = 2\nkey_field = 'request_id'").unwrap();
        let mut s = c.build(&metrics()).unwrap();
        let events: Vec<Event> =
            (0..200).map(|i| Event::from_value(vrl::value!({"request_id": (i % 20)}))).collect();
        let (out, _) = run(&mut s, 0, events);
        assert_eq!(out.len() % 10, 0, "each kept id keeps all of its 10 events");
        assert!(!out.is_empty() && out.len() < 200);
    }
}
