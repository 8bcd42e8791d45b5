//! `filter`: keeps the events for which a VRL condition is true.
//!
//! ```toml
//! [transforms.errors_only]
//! type = "filter"
//! inputs = ["parsed"]
//! condition = '(int(.status) ?? 0) >= 500 || exists(.error)'
//! ```
//! A condition that fails at run time (a type error on an odd event) counts as false and is
//! counted as an error. Events filtered out count as delivered for acknowledgements.

use serde::Deserialize;

use super::vrl_program::{VrlProgram, VrlRunner};
use super::{Transform, TransformOutput};
use crate::component::TransformComponent;
use crate::error::ConfigIssue;
use crate::event::Event;
use crate::internal_events::{EventsDiscarded, ProgramFailed};
use crate::metrics::ComponentMetrics;

/// `[transforms.<id>] type = "filter"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// A VRL expression returning a boolean.
    pub condition: String,
}

pub struct Filter {
    condition: VrlRunner,
    failed: ProgramFailed,
    discarded: EventsDiscarded,
}

impl TransformComponent for FilterConfig {
    type Built = Filter;

    fn concurrent(&self) -> bool {
        true
    }

    fn build(&self, metrics: &ComponentMetrics) -> Result<Filter, ConfigIssue> {
        let program = VrlProgram::compile(&self.condition, true)
            .map_err(|e| ConfigIssue::field("condition", e))?;
        Ok(Filter {
            condition: VrlRunner::new(program),
            failed: ProgramFailed::new(metrics),
            discarded: EventsDiscarded::new(metrics, crate::metrics::discard_reason::FILTERED),
        })
    }
}

impl Transform for Filter {
    fn transform(&mut self, events: Vec<Event>, out: &mut TransformOutput) {
        let mut dropped = 0;
        for mut event in events {
            match self.condition.check(&mut event) {
                Ok(true) => out.push(event),
                Ok(false) => dropped += 1,
                Err(e) => {
                    self.failed.emit(&e.to_string());
                    dropped += 1;
                }
            }
        }
        self.discarded.emit(dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::test_util::{metrics, run};

    #[test]
    fn keeps_matching_events() {
        let c: FilterConfig =
            toml_edit::de::from_str("condition = '(int(.status) ?? 0) >= 500'").unwrap();
        let mut f = c.build(&metrics()).unwrap();
        let events = [200, 503, 500, 404]
            .into_iter()
            .map(|s| Event::from_value(vrl::value!({"status": s})))
            .chain([Event::from_message("no status")])
            .collect();
        let (out, _) = run(&mut f, 0, events);
        assert_eq!(out.len(), 2);
    }

    #[tokio::test]
    async fn keeps_the_transform_contract() {
        use crate::contract::{Expect, events, run_transform};
        let c: FilterConfig =
            toml_edit::de::from_str("condition = 'starts_with(string!(.message), \"keep\")'")
                .unwrap();
        let (input, acks) = events(&["keep 1", "drop", "keep 2"]);
        let run = run_transform(&c, "filter", input).await;
        assert_eq!(run.out.len(), 2);
        let expect = Expect {
            received: 3,
            sent: 2,
            discarded: vec![("filtered", 1)],
            // Filtered out on purpose counts as delivered.
            status: Some(crate::event::BatchStatus::Delivered),
            ..Expect::default()
        };
        expect.check(run, Some(acks)).await;
    }
}
