//! The component graph: inputs resolve, outputs exist, no cycles.
//!
//! An input is written `id` (the component's default output) or `id.output` (a named output,
//! such as a `route`'s routes or a parser's `errors`). Sinks cannot be inputs.

use std::collections::{BTreeMap, BTreeSet};

use super::{ComponentKind, Config, ConfigError, did_you_mean};

/// An edge target: a component and one of its outputs (`None` = default output).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutputId {
    pub component: String,
    pub port: Option<String>,
}

impl std::fmt::Display for OutputId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.port {
            Some(p) => write!(f, "{}.{p}", self.component),
            None => f.write_str(&self.component),
        }
    }
}

/// A transform or sink whose own table failed to load, kept so that its inputs are still
/// checked.
#[derive(Debug, Clone)]
pub struct Consumer {
    pub kind: ComponentKind,
    pub id: String,
    pub inputs: Vec<String>,
    pub location: super::Location,
}

/// Splits `id.output` into its parts.
pub fn parse_input(input: &str) -> OutputId {
    match input.split_once('.') {
        Some((c, p)) => OutputId { component: c.to_string(), port: Some(p.to_string()) },
        None => OutputId { component: input.to_string(), port: None },
    }
}

/// Checks the graph; pushes warnings for unconsumed outputs into `config.warnings`.
pub(super) fn check(
    config: &mut Config,
    broken: &BTreeSet<String>,
    broken_consumers: &[Consumer],
) -> Vec<ConfigError> {
    let Resolved { edges, consumed, mut errors } = resolve(config, broken, broken_consumers);
    errors.extend(find_cycles(config, &edges));
    let warnings = unread_outputs(config, &consumed);
    config.warnings.extend(warnings);
    errors
}

/// The graph's edges as the inputs name them, and what is wrong with those inputs.
struct Resolved {
    /// From each component to the components reading one of its outputs.
    edges: BTreeMap<String, Vec<String>>,
    /// Every output some component reads.
    consumed: BTreeSet<OutputId>,
    errors: Vec<ConfigError>,
}

/// Resolves the inputs of every transform and sink (and of the broken ones, whose inputs
/// still parsed) to the outputs they name.
fn resolve(config: &Config, broken: &BTreeSet<String>, broken_consumers: &[Consumer]) -> Resolved {
    let mut resolved =
        Resolved { edges: BTreeMap::new(), consumed: BTreeSet::new(), errors: Vec::new() };
    // Outputs each upstream component offers.
    let mut offers: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for id in config.sources.keys() {
        offers.insert(id, Vec::new());
    }
    for (id, def) in &config.transforms {
        offers.insert(id, def.inner.outputs());
    }
    let sink_ids: BTreeSet<&str> = config.sinks.keys().map(String::as_str).collect();
    let consumers = config
        .transforms
        .iter()
        .map(|(id, d)| (ComponentKind::Transform, id, &d.inputs, d.locate(Some("inputs"))))
        .chain(
            config
                .sinks
                .iter()
                .map(|(id, d)| (ComponentKind::Sink, id, &d.inputs, d.locate(Some("inputs")))),
        )
        .chain(broken_consumers.iter().map(|c| (c.kind, &c.id, &c.inputs, c.location.clone())));
    for (kind, id, inputs, location) in consumers {
        let error = |message: String| ConfigError {
            location: Some(location.clone()),
            component: Some(format!("{}.{id}", kind.table())),
            message,
        };
        // The dead-letter sink may have no inputs of its own.
        let dead_letter_only =
            kind == ComponentKind::Sink && config.dead_letter.sink.as_deref() == Some(id.as_str());
        if inputs.is_empty() && !dead_letter_only {
            let message = format!("`inputs` is empty: a {} needs at least one input", kind.name());
            resolved.errors.push(error(message));
        }
        for input in inputs {
            let out = parse_input(input);
            if broken.contains(&out.component) {
                continue;
            }
            if let Some(message) = input_problem(input, &out, id, &offers, &sink_ids) {
                resolved.errors.push(error(message));
                continue;
            }
            resolved.edges.entry(out.component.clone()).or_default().push(id.clone());
            resolved.consumed.insert(out);
        }
    }
    resolved
}

/// What is wrong with `input` of component `id`, if anything: it names a sink, nothing, an
/// output its component does not have, or the component itself.
fn input_problem(
    input: &str,
    out: &OutputId,
    id: &str,
    offers: &BTreeMap<&str, Vec<String>>,
    sink_ids: &BTreeSet<&str>,
) -> Option<String> {
    let Some(ports) = offers.get(out.component.as_str()) else {
        if sink_ids.contains(out.component.as_str()) {
            return Some(format!(
                "input \"{input}\" is a sink; only sources and transforms can be inputs"
            ));
        }
        let hint = did_you_mean(&out.component, offers.keys().copied())
            .map(|s| format!(" (did you mean \"{s}\"?)"))
            .unwrap_or_default();
        return Some(format!("input \"{input}\" names no source or transform{hint}"));
    };
    if let Some(port) = &out.port
        && !ports.contains(port)
    {
        let offered = if ports.is_empty() {
            format!("`{}` has no named outputs", out.component)
        } else {
            let names: Vec<String> =
                ports.iter().map(|p| format!("\"{}.{p}\"", out.component)).collect();
            format!("`{}` has the outputs {}", out.component, names.join(", "))
        };
        return Some(format!("input \"{input}\" names no output: {offered}"));
    }
    (id == out.component).then(|| format!("input \"{input}\" is the component itself (a cycle)"))
}

/// Cycles through transforms: depth-first search with colours, each cycle reported once.
fn find_cycles(config: &Config, edges: &BTreeMap<String, Vec<String>>) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut state: BTreeMap<&str, u8> = BTreeMap::new(); // 1 = on stack, 2 = done
    let mut reported = BTreeSet::new();
    for start in config.transforms.keys() {
        let mut stack: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        if state.get(start.as_str()).copied() == Some(2) {
            continue;
        }
        state.insert(start, 1);
        while let Some((node, next)) = stack.last().cloned() {
            let children = edges.get(node).map(Vec::as_slice).unwrap_or(&[]);
            if next >= children.len() {
                state.insert(node, 2);
                stack.pop();
                continue;
            }
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
            let child = children[next].as_str();
            if !config.transforms.contains_key(child) {
                continue;
            }
            match state.get(child).copied() {
                Some(1) => {
                    let pos = stack.iter().position(|(n, _)| *n == child).unwrap_or(0);
                    let mut cycle: Vec<&str> = stack[pos..].iter().map(|(n, _)| *n).collect();
                    cycle.push(child);
                    let key: BTreeSet<&str> = cycle.iter().copied().collect();
                    if reported.insert(key.into_iter().collect::<Vec<_>>().join(",")) {
                        let def = &config.transforms[child];
                        errors.push(ConfigError {
                            location: Some(def.locate(Some("inputs"))),
                            component: Some(format!("transforms.{child}")),
                            message: format!("the inputs form a cycle: {}", cycle.join(" -> ")),
                        });
                    }
                }
                Some(2) => {}
                _ => {
                    state.insert(child, 1);
                    stack.push((child, 0));
                }
            }
        }
    }
    errors
}

/// Warnings: outputs nobody reads.
fn unread_outputs(config: &Config, consumed: &BTreeSet<OutputId>) -> Vec<String> {
    let mut warnings = Vec::new();
    for id in config.sources.keys() {
        let out = OutputId { component: id.clone(), port: None };
        if !consumed.contains(&out) {
            warnings.push(format!("sources.{id}: no component reads its output"));
        }
    }
    for id in config.transforms.keys() {
        let out = OutputId { component: id.clone(), port: None };
        if !consumed.contains(&out) && !consumed.iter().any(|o| &o.component == id) {
            warnings.push(format!("transforms.{id}: no component reads its output"));
        }
    }
    warnings
}
