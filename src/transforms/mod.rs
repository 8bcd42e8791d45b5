//! Transforms: parse, enrich and filter stages. One file per transform.
//!
//! Every transform is synchronous: it takes a batch and pushes events into its outputs. The
//! topology runs each one as a task between two bounded channels.
//!
//! Parsers share one contract ([`parse`]): a failure never drops an event silently. By
//! default the event passes on unparsed with an `error.message` field and the failure is
//! counted; with `drop_on_error = true` it goes to the `<id>.errors` output instead (discarded
//! and counted if nothing reads that output).

pub mod accuracy;
pub mod drift;
pub mod fields;
pub mod filter;
pub mod log_to_metric;
pub mod model_logs;
pub mod parse;
pub mod parse_grok;
pub mod parse_json;
pub mod parse_kv;
pub mod parse_regex;
pub mod parse_timestamp;
pub mod remap;
pub mod route;
pub mod sample;
pub mod vrl_program;

use crate::config::ConfigIssue;
use crate::event::Event;
use crate::metrics::ComponentMetrics;

/// A transform's per-batch work.
pub trait Transform: Send + 'static {
    /// Processes `events`, pushing results into `out`.
    fn transform(&mut self, events: Vec<Event>, out: &mut TransformOutput);
}

/// Where a transform puts its results: the default output and its named outputs, in the order
/// of [`TransformConfig::outputs`].
pub struct TransformOutput {
    pub primary: Vec<Event>,
    pub named: Vec<Vec<Event>>,
}

impl TransformOutput {
    pub fn new(named: usize) -> Self {
        Self { primary: Vec::new(), named: (0..named).map(|_| Vec::new()).collect() }
    }

    pub fn push(&mut self, event: Event) {
        self.primary.push(event);
    }

    /// Pushes to the named output at `index`.
    pub fn push_named(&mut self, index: usize, event: Event) {
        match self.named.get_mut(index) {
            Some(v) => v.push(event),
            // An index beyond the declared outputs is a programming error; keep the event.
            None => self.primary.push(event),
        }
    }
}

crate::component_enum! {
    /// The `type` of a `[transforms.<id>]` table.
    TransformConfig {
        "accuracy" => Accuracy(accuracy::AccuracyConfig),
        "drift" => Drift(drift::DriftConfig),
        "filter" => Filter(filter::FilterConfig),
        "log_to_metric" => LogToMetric(log_to_metric::LogToMetricConfig),
        "parse_grok" => ParseGrok(parse_grok::ParseGrokConfig),
        "parse_json" => ParseJson(parse_json::ParseJsonConfig),
        "parse_kv" => ParseKv(parse_kv::ParseKvConfig),
        "parse_logfmt" => ParseLogfmt(parse_kv::ParseLogfmtConfig),
        "parse_model_log" => ParseModelLog(model_logs::ParseModelLogConfig),
        "parse_regex" => ParseRegex(parse_regex::ParseRegexConfig),
        "parse_timestamp" => ParseTimestamp(parse_timestamp::ParseTimestampConfig),
        "remap" => Remap(remap::RemapConfig),
        "remove" => Remove(fields::RemoveConfig),
        "rename" => Rename(fields::RenameConfig),
        "route" => Route(route::RouteConfig),
        "sample" => Sample(sample::SampleConfig),
        "set" => Set(fields::SetConfig),
    }
}

impl TransformConfig {
    /// Named outputs besides the default one.
    pub fn outputs(&self) -> Vec<String> {
        match self {
            Self::Route(c) => c.outputs(),
            Self::ParseGrok(_)
            | Self::ParseJson(_)
            | Self::ParseKv(_)
            | Self::ParseLogfmt(_)
            | Self::ParseModelLog(_)
            | Self::ParseRegex(_)
            | Self::ParseTimestamp(_)
            | Self::Remap(_) => vec![parse::ERRORS_OUTPUT.to_string()],
            Self::Accuracy(_)
            | Self::Drift(_)
            | Self::Filter(_)
            | Self::LogToMetric(_)
            | Self::Remove(_)
            | Self::Rename(_)
            | Self::Sample(_)
            | Self::Set(_) => Vec::new(),
        }
    }

    /// Builds the transform. Pure: compiles patterns and programs, touches nothing outside.
    pub fn build(
        &self,
        id: &str,
        metrics: &ComponentMetrics,
    ) -> Result<Box<dyn Transform>, ConfigIssue> {
        let _ = id;
        Ok(match self {
            Self::Accuracy(c) => Box::new(c.build(metrics)?),
            Self::Drift(c) => Box::new(c.build(metrics)?),
            Self::Filter(c) => Box::new(c.build(metrics)?),
            Self::LogToMetric(c) => Box::new(c.build(metrics)?),
            Self::ParseGrok(c) => Box::new(c.build(metrics)?),
            Self::ParseJson(c) => Box::new(c.build(metrics)?),
            Self::ParseKv(c) => Box::new(c.build(metrics)?),
            Self::ParseLogfmt(c) => Box::new(c.build(metrics)?),
            Self::ParseModelLog(c) => Box::new(c.build(metrics)?),
            Self::ParseRegex(c) => Box::new(c.build(metrics)?),
            Self::ParseTimestamp(c) => Box::new(c.build(metrics)?),
            Self::Remap(c) => Box::new(c.build(metrics)?),
            Self::Remove(c) => Box::new(c.build()?),
            Self::Rename(c) => Box::new(c.build()?),
            Self::Route(c) => Box::new(c.build(metrics)?),
            Self::Sample(c) => Box::new(c.build(metrics)?),
            Self::Set(c) => Box::new(c.build()?),
        })
    }

    /// Checks the config by building it against throw-away metrics. Transforms whose build
    /// reads files (`drift` reads its reference profiles) check without building, so that
    /// validation stays pure.
    pub fn check(&self, id: &str) -> Vec<ConfigIssue> {
        if let Self::Drift(c) = self {
            return c.check();
        }
        let metrics = ComponentMetrics::new(crate::metrics::ComponentLabels::new(
            id,
            "transform",
            self.type_name(),
        ));
        match self.build(id, &metrics) {
            Ok(_) => Vec::new(),
            Err(issue) => vec![issue],
        }
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;
    use crate::metrics::ComponentLabels;

    pub fn metrics() -> ComponentMetrics {
        ComponentMetrics::new(ComponentLabels::new("test", "transform", "test"))
    }

    /// Runs one batch through `t` and returns (default output, named outputs).
    pub fn run(
        t: &mut dyn Transform,
        named: usize,
        events: Vec<Event>,
    ) -> (Vec<Event>, Vec<Vec<Event>>) {
        let mut out = TransformOutput::new(named);
        t.transform(events, &mut out);
        (out.primary, out.named)
    }

    pub fn json(e: &Event) -> String {
        serde_json::to_string(&e.view()).unwrap()
    }
}
