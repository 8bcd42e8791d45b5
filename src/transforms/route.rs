//! `route`: sends events to named outputs by VRL condition.
//!
//! ```toml
//! [transforms.by_kind]
//! type = "route"
//! inputs = ["parsed"]
//! route.errors = '(int(.status) ?? 0) >= 500'
//! route.slow = '(float(.latency_seconds) ?? 0.0) > 1.0'
//! ```
//! Each route is an output (`by_kind.errors`, `by_kind.slow`); an event that matches several
//! goes to each. Events matching none go to `by_kind._unmatched`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::vrl_program::{VrlProgram, VrlRunner};
use super::{Transform, TransformOutput};
use crate::component::TransformComponent;
use crate::error::ConfigIssue;
use crate::event::Event;
use crate::internal_events::ProgramFailed;
use crate::metrics::ComponentMetrics;

/// Output for events no route matched.
pub const UNMATCHED: &str = "_unmatched";

/// `[transforms.<id>] type = "route"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Route name -> VRL condition.
    pub route: BTreeMap<String, String>,
}

impl TransformComponent for RouteConfig {
    type Built = Route;

    fn concurrent(&self) -> bool {
        true
    }

    fn outputs(&self) -> Vec<String> {
        self.route.keys().cloned().chain([UNMATCHED.to_string()]).collect()
    }

    fn build(&self, metrics: &ComponentMetrics) -> Result<Route, ConfigIssue> {
        if self.route.is_empty() {
            return Err(ConfigIssue::field(
                "route",
                "give at least one route: route.<name> = '<condition>'",
            ));
        }
        let mut routes = Vec::new();
        for (name, condition) in &self.route {
            if name == UNMATCHED || name.is_empty() || name.contains('.') {
                return Err(ConfigIssue::field("route", format!("invalid route name `{name}`")));
            }
            let program = VrlProgram::compile(condition, true)
                .map_err(|e| ConfigIssue::field(&format!("route.{name}"), e))?;
            routes.push(VrlRunner::new(program));
        }
        Ok(Route { routes, failed: ProgramFailed::new(metrics) })
    }
}

pub struct Route {
    /// In the order of `outputs()`; the unmatched output follows them.
    routes: Vec<VrlRunner>,
    failed: ProgramFailed,
}

impl Transform for Route {
    fn transform(&mut self, events: Vec<Event>, out: &mut TransformOutput) {
        let unmatched = self.routes.len();
        let mut hits = Vec::with_capacity(self.routes.len());
        for mut event in events {
            hits.clear();
            for (i, r) in self.routes.iter_mut().enumerate() {
                match r.check(&mut event) {
                    Ok(true) => hits.push(i),
                    Ok(false) => {}
                    Err(e) => self.failed.emit(&e.to_string()),
                }
            }
            match hits.split_last() {
                None => out.push_named(unmatched, event),
                Some((last, rest)) => {
                    for &i in rest {
                        out.push_named(i, event.clone());
                    }
                    out.push_named(*last, event);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::test_util::{metrics, run};

    #[test]
    fn routes_by_condition() {
        let c: RouteConfig = toml_edit::de::from_str(
            "route.err = '(int(.status) ?? 0) >= 500'\nroute.all = 'exists(.status)'",
        )
        .unwrap();
        assert_eq!(c.outputs(), ["all", "err", "_unmatched"]);
        let mut r = c.build(&metrics()).unwrap();
        let events = vec![
            Event::from_value(vrl::value!({"status": 503})),
            Event::from_value(vrl::value!({"status": 200})),
            Event::from_message("none"),
        ];
        let (primary, named) = run(&mut r, 3, events);
        assert!(primary.is_empty());
        assert_eq!((named[0].len(), named[1].len(), named[2].len()), (2, 1, 1));
    }
}
