//! The state of every component, as `/health` reports it ([`crate::api`]).
//!
//! One process-wide [`Registry`] (like the metrics registry): the topology registers each
//! component when it starts its task and marks it failed or finished when the task ends;
//! components that can tell they are not working (a sink whose requests fail, a source that
//! cannot read) mark themselves unhealthy through a [`Handle`] and healthy again once they
//! work. Each state is also exported as the gauge `weir_component_healthy` (1 or 0).
//!
//! Readiness is the conjunction: weir is ready when no component is unhealthy or failed. A
//! component that finished on its own (stdin at its end) is not a fault.
//!
//! Invariant: a reason is bounded ([`MAX_REASON_BYTES`]) and never holds a URL with
//! credentials (callers pass errors whose URLs have been stripped).

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{Value, json};

use crate::metrics::{ComponentLabels, Labels};

/// Longest reason kept for a component (longer ones are cut at a character boundary).
pub const MAX_REASON_BYTES: usize = 512;

/// What a component is doing, as far as weir can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Healthy,
    /// Running but not doing its job (requests failing, credentials refused, reads failing).
    Unhealthy(String),
    /// Its task ended with an error: it will not run again until weir restarts.
    Failed,
    /// Its task ended on its own without error (a source at the end of its input).
    Finished,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy(_) => "unhealthy",
            Self::Failed => "failed",
            Self::Finished => "finished",
        }
    }

    fn is_fault(&self) -> bool {
        matches!(self, Self::Unhealthy(_) | Self::Failed)
    }
}

struct Entry {
    type_name: String,
    state: State,
    gauge: Gauge,
}

/// Component states by name (`sources.in`, `sinks.es`).
#[derive(Default)]
pub struct Registry {
    entries: Mutex<BTreeMap<String, Entry>>,
    gauges: Family<Labels, Gauge>,
}

/// What `/health` answers.
pub struct Report {
    /// No component is unhealthy or failed.
    pub ready: bool,
    /// The names of those that are.
    pub faults: Vec<String>,
    /// `{"sinks.es": {"type": "elasticsearch", "state": "unhealthy", "reason": "..."}}`
    pub components: Value,
}

/// The process-wide registry (its gauge registered with the metrics on first use).
pub fn global() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let r = Registry::default();
        crate::metrics::global().register(
            "component_healthy",
            "Whether a component is healthy (1) or unhealthy or failed (0), as /health reports it",
            r.gauges.clone(),
        );
        r
    })
}

/// `sinks.es` for a sink `es`.
pub fn name_of(labels: &ComponentLabels) -> String {
    format!("{}s.{}", labels.kind, labels.id)
}

fn bounded(mut reason: String) -> String {
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push_str("...");
    }
    reason
}

impl Registry {
    /// Registers a component as healthy (again, when it exists).
    pub fn register(&self, labels: &ComponentLabels) -> Handle<'_> {
        let name = name_of(labels);
        let gauge = self.gauges.get_or_create_owned(&labels.labels());
        gauge.set(1);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert(
            name.clone(),
            Entry { type_name: labels.type_name.clone(), state: State::Healthy, gauge },
        );
        Handle { registry: self, name }
    }

    /// Forgets a component that a reload removed or replaced (its replacement registers
    /// anew).
    pub fn forget(&self, labels: &ComponentLabels) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(&name_of(labels));
        self.gauges.remove(&labels.labels());
    }

    /// The handle of a registered component (registering it when it is not).
    pub fn handle(&self, labels: &ComponentLabels) -> Handle<'_> {
        let name = name_of(labels);
        let known = self.entries.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&name);
        if known { Handle { registry: self, name } } else { self.register(labels) }
    }

    fn set(&self, name: &str, state: State) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = entries.get_mut(name) {
            // A component that ended stays ended: a late report from its side tasks does not
            // bring it back.
            if matches!(e.state, State::Failed | State::Finished)
                && matches!(state, State::Healthy | State::Unhealthy(_))
            {
                return;
            }
            e.gauge.set(i64::from(!state.is_fault()));
            e.state = state;
        }
    }

    /// The state of every component, and whether weir is ready.
    pub fn report(&self) -> Report {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut components = serde_json::Map::new();
        let mut faults = Vec::new();
        for (name, e) in entries.iter() {
            let mut v = json!({ "type": e.type_name, "state": e.state.name() });
            if let State::Unhealthy(reason) = &e.state {
                v["reason"] = Value::from(reason.as_str());
            }
            if e.state.is_fault() {
                faults.push(name.clone());
            }
            components.insert(name.clone(), v);
        }
        Report { ready: faults.is_empty(), faults, components: Value::Object(components) }
    }
}

/// A component's way to report its state.
#[derive(Clone)]
pub struct Handle<'a> {
    registry: &'a Registry,
    name: String,
}

impl Handle<'_> {
    pub fn healthy(&self) {
        self.registry.set(&self.name, State::Healthy);
    }

    /// Marks the component unhealthy, saying why (bounded, see [`MAX_REASON_BYTES`]).
    pub fn unhealthy(&self, reason: impl Into<String>) {
        self.registry.set(&self.name, State::Unhealthy(bounded(reason.into())));
    }

    pub fn failed(&self) {
        self.registry.set(&self.name, State::Failed);
    }

    pub fn finished(&self) {
        self.registry.set(&self.name, State::Finished);
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_without_unhealthy_or_failed_components() {
        let r = Registry::default();
        let es = r.register(&ComponentLabels::new("es", "sink", "elasticsearch"));
        let src = r.register(&ComponentLabels::new("in", "source", "stdin"));
        assert!(r.report().ready);
        es.unhealthy("credentials refused (HTTP 401)");
        let report = r.report();
        assert!(!report.ready);
        assert_eq!(report.faults, ["sinks.es"]);
        assert_eq!(report.components["sinks.es"]["state"], "unhealthy");
        assert_eq!(report.components["sinks.es"]["reason"], "credentials refused (HTTP 401)");
        assert_eq!(report.components["sources.in"]["state"], "healthy");
        es.healthy();
        src.finished();
        assert!(r.report().ready, "a finished source is not a fault");
        // An ended component is not revived by a late report.
        src.unhealthy("late");
        assert_eq!(r.report().components["sources.in"]["state"], "finished");
        r.handle(&ComponentLabels::new("es", "sink", "elasticsearch")).failed();
        assert_eq!(r.report().faults, ["sinks.es"]);
        let labels = ComponentLabels::new("es", "sink", "elasticsearch").labels();
        assert_eq!(r.gauges.get_or_create(&labels).get(), 0);
    }

    #[test]
    fn reasons_are_bounded() {
        let r = Registry::default();
        let h = r.register(&ComponentLabels::new("es", "sink", "elasticsearch"));
        h.unhealthy("é".repeat(1000));
        let reason = r.report().components["sinks.es"]["reason"].as_str().unwrap().to_string();
        assert!(
            reason.len() <= MAX_REASON_BYTES + 3 && reason.ends_with("..."),
            "{}",
            reason.len()
        );
    }
}
