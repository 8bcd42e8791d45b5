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
pub mod runner;
pub mod sample;
pub mod vrl_program;

pub use crate::component::{Transform, TransformComponent, TransformOutput};

crate::component_enum! {
    transform
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

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;
    use crate::event::Event;
    use crate::metrics::{ComponentLabels, ComponentMetrics};

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
