//! `remap`: free-form edits with a VRL program, as in Vector.
//!
//! ```toml
//! [transforms.shape]
//! type = "remap"
//! inputs = ["parsed"]
//! source = '''
//! .latency_seconds = to_float!(.latency_ms) / 1000.0
//! del(.latency_ms)
//! '''
//! ```
//! A program that fails at run time leaves the event as it was before the program, with an
//! `error.message`; with `drop_on_error = true` it goes to `<id>.errors` instead. `abort`
//! discards the event (counted) unless `drop_on_abort = false`.

use serde::Deserialize;

use super::parse::mark_error;
use super::vrl_program::{VrlFailure, VrlProgram, VrlRunner};
use super::{Transform, TransformOutput};
use crate::component::TransformComponent;
use crate::error::ConfigIssue;
use crate::event::Event;
use crate::internal_events::{EventsDiscarded, ProgramFailed};
use crate::metrics::ComponentMetrics;

/// `[transforms.<id>] type = "remap"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemapConfig {
    /// The VRL program.
    pub source: String,
    /// Send events whose program fails at run time to the `<id>.errors` output instead of
    /// passing them on unchanged with an `error.message` field. Default false.
    #[serde(default)]
    pub drop_on_error: bool,
    /// Discard (and count) the events the program `abort`s; false passes them on as they
    /// were. Default true.
    #[serde(default = "default_true")]
    pub drop_on_abort: bool,
}

fn default_true() -> bool {
    true
}

pub struct Remap {
    runner: VrlRunner,
    drop_on_error: bool,
    drop_on_abort: bool,
    failed: ProgramFailed,
    aborted: EventsDiscarded,
}

impl TransformComponent for RemapConfig {
    type Built = Remap;

    fn concurrent(&self) -> bool {
        true
    }

    fn build(&self, metrics: &ComponentMetrics) -> Result<Remap, ConfigIssue> {
        let program = VrlProgram::compile(&self.source, false)
            .map_err(|e| ConfigIssue::field("source", e))?;
        Ok(Remap {
            runner: VrlRunner::new(program),
            drop_on_error: self.drop_on_error,
            drop_on_abort: self.drop_on_abort,
            failed: ProgramFailed::new(metrics),
            aborted: EventsDiscarded::new(metrics, crate::metrics::discard_reason::ABORTED),
        })
    }

    fn outputs(&self) -> Vec<String> {
        vec![crate::transforms::parse::ERRORS_OUTPUT.to_string()]
    }
}

impl Transform for Remap {
    fn transform(&mut self, events: Vec<Event>, out: &mut TransformOutput) {
        for event in events {
            // The program edits in place; keep the original to restore on failure.
            let mut working = event.clone();
            match self.runner.run(&mut working) {
                Ok(_) => {
                    // A program can add or remove anything, so the channel's byte bound
                    // needs the size measured again (cheap beside running the program).
                    working.recompute_size();
                    out.push(working)
                }
                Err(VrlFailure::Aborted(_)) if self.drop_on_abort => self.aborted.emit(1),
                Err(e) => {
                    drop(working);
                    let mut event = event;
                    self.failed.emit(&e.to_string());
                    mark_error(&mut event, "remap", &e.to_string());
                    if self.drop_on_error {
                        out.push_named(0, event);
                    } else {
                        out.push(event);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::test_util::{json, metrics, run};

    #[test]
    fn edits_and_failures() {
        let c: RemapConfig = toml_edit::de::from_str(
            "source = '''\n.latency_seconds = to_float!(.latency_ms) / 1000.0\ndel(.latency_ms)\nif .drop == true { abort }\n'''",
        )
        .unwrap();
        let mut r = c.build(&metrics()).unwrap();
        let events = vec![
            Event::from_value(vrl::value!({"latency_ms": 250})),
            Event::from_value(vrl::value!({"latency_ms": "fast"})),
            Event::from_value(vrl::value!({"latency_ms": 1, "drop": true})),
        ];
        let (out, _) = run(&mut r, 1, events);
        assert_eq!(out.len(), 2);
        assert_eq!(json(&out[0]), r#"{"latency_seconds":0.25}"#);
        let failed = json(&out[1]);
        assert!(failed.contains(r#""latency_ms":"fast""#) && failed.contains("error"), "{failed}");
    }

    #[test]
    fn the_size_estimate_follows_what_the_program_added_and_removed() {
        let program = |source: &str| {
            let c: RemapConfig =
                toml_edit::de::from_str(&format!("source = '''{source}'''")).unwrap();
            c.build(&metrics()).unwrap()
        };
        let big = "x".repeat(100_000);
        let event = Event::from_value(vrl::value!({"src": big, "old": "y"}));
        let before = event.size();
        let (out, _) = run(&mut program(".copy = .src\ndel(.old)"), 1, vec![event]);
        let grown = out[0].size();
        assert!(grown >= before + 100_000, "{grown} after a 100 KB copy, {before} before");
        let (out, _) = run(&mut program("del(.copy)\ndel(.src)"), 1, out);
        assert!(out[0].size() + 200_000 <= grown, "{} after, {grown} before", out[0].size());
    }
}
