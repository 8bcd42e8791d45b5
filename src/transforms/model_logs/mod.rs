//! `parse_model_log`: the log lines of model servers, read by built-in named grammars into one
//! inference event schema.
//!
//! ```toml
//! [transforms.inference]
//! type = "parse_model_log"
//! inputs = ["torchserve_logs"]
//! format = "auto"          # or one grammar: "torchserve_access", "vllm", ...
//! timezone = "UTC"         # for timestamps written without a zone (default: local)
//! ```
//!
//! Grammars (`format`): `torchserve_access`, `torchserve_metrics`, `triton` (glog lines and
//! verbose request lines), `vllm` (engine stats V0 and V1, request lines, the API server's
//! uvicorn access lines), `bentoml_access`, `bentoml_monitoring` (JSON), `rayserve_access`
//! (text), `rayserve_json`, `kserve` (uvicorn access lines), `json_prediction` (generic JSON
//! prediction logs) and `python_logging` (`%(asctime)s [%(levelname)s] %(name)s: %(message)s`,
//! including `Input Data: {'f1': 0.75} | Prediction: class_A` messages and tracebacks).
//! `auto` tries the grammars whose format the line resembles, in that order.
//!
//! # The inference event schema
//!
//! Elastic Common Schema names where one exists, `inference.*` for the rest. A grammar sets
//! the fields its format carries and leaves the others out.
//!
//! | field | meaning |
//! |---|---|
//! | `@timestamp` | when the server wrote the line; year- and zone-less times are resolved as `parse_timestamp` does (current year, previous one across New Year; `timezone`) |
//! | `service.name` | the server kind: `torchserve`, `triton`, `vllm`, `bentoml`, `ray_serve`, `kserve`, `model_server` (generic JSON), `python` |
//! | `event.dataset` | the grammar that read the line |
//! | `event.action` | `request` (a finished request), `request_received`, `request_prepared`, `request_finished`, `request_aborted`, `prediction`, `prediction_failed`, `metric`, `stats`, `model_load`, `log` |
//! | `event.kind` | `metric` for metric and engine-stats lines (else unset: an event) |
//! | `event.outcome` | `success` or `failure` (HTTP status ≥ 400, `ERROR`, a traceback, an `error` field) |
//! | `model.name`, `model.version` | from the line, the request path (`/predictions/{m}/{v}`, `/v1/models/{m}:predict`, `/v2/models/{m}/versions/{v}/infer`) or the worker name |
//! | `http.request.id` | the request id, always a string, exact (a `u64` beyond `i64::MAX` is not rounded) |
//! | `http.request.method`, `url.path`, `url.scheme`, `http.response.status_code`, `http.response.mime_type`, `http.response.body.bytes` | HTTP access fields |
//! | `inference.status_class` | `2xx`, `4xx`, `5xx` ... for HTTP statuses, `ok` / `error` otherwise (a bounded label for metrics) |
//! | `client.address`, `client.ip`, `client.port` | the caller (`client.ip` only when the address is an IP) |
//! | `inference.latency_seconds` | request latency, normalised to seconds from ms, µs, s |
//! | `inference.tokens.prompt`, `inference.tokens.completion` | token counts |
//! | `inference.features.*` | the request's feature values (JSON objects, Python dict literals, BentoML's flat records) |
//! | `inference.prediction`, `inference.score` | the model's output and its score |
//! | `inference.metric.name`, `.value`, `.unit` | a TorchServe metric line (time units converted to seconds) |
//! | `inference.throughput.prompt_tokens_per_second`, `.generation_tokens_per_second`, `inference.requests.running`, `.waiting`, `.swapped`, `inference.gpu_kv_cache_usage`, `inference.cpu_kv_cache_usage`, `inference.prefix_cache_hit_rate` | vLLM engine stats (percentages as ratios 0..1) |
//! | `inference.batch_size`, `inference.timeout_seconds`, `inference.replica`, `inference.application`, `inference.component`, `inference.call`, `inference.engine` | server-specific details |
//! | `log.level`, `log.logger`, `log.origin.file.name`, `log.origin.file.line`, `process.pid`, `process.name`, `process.thread.id`, `process.thread.name`, `host.name`, `trace.id`, `span.id` | ECS log and process fields |
//! | `error.message`, `error.type`, `error.stack_trace` | the error, from a traceback's last line or an `error` field |
//!
//! JSON logs keep the keys the schema does not name, at the top level.
//!
//! # Failures
//!
//! The shared parse contract holds (see [`super::parse`]): a line no grammar reads passes on
//! with `error.message` (or goes to `<id>.errors` with `drop_on_error = true`) and is counted.
//! Each failure is also counted per grammar in `weir_model_log_parse_failures_total{grammar}`,
//! so a server upgrade that changes its format shows up as a rising series: with a fixed
//! `format` the failure is that grammar's; with `auto` it is the first grammar that claimed the
//! line, or `none` when none did. Successes are counted in
//! `weir_model_log_parsed_events_total{grammar}`.

pub mod grammars;
pub mod python_literal;

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Deserialize;
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use super::parse::{mark_error, parse_field};
use super::{Transform, TransformOutput};
use crate::config::{ConfigIssue, did_you_mean};
use crate::event::{Event, parse_path};
use crate::internal_events::ParseFailed;
use crate::metrics::{ComponentMetrics, Labels};
pub use grammars::Grammar;
use grammars::{Grammars, Parsed};

/// `[transforms.<id>] type = "parse_model_log"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseModelLogConfig {
    /// A grammar name, or `auto` (the default).
    #[serde(default = "default_format")]
    pub format: String,
    /// Zone of timestamps written without one: `local` (default), `UTC`, or an IANA name.
    #[serde(default)]
    pub timezone: Option<String>,
    /// The field holding the line. Default `message`.
    #[serde(default = "crate::transforms::parse::default_field")]
    pub field: String,
    /// Nest the schema's fields under this path instead of the event's root.
    #[serde(default)]
    pub target: Option<String>,
    /// Send lines no grammar reads to `<id>.errors` instead of passing them on.
    #[serde(default)]
    pub drop_on_error: bool,
}

fn default_format() -> String {
    "auto".into()
}

/// Per-grammar counters, one family for every `parse_model_log` component.
struct GrammarCounters {
    failures: Family<Labels, Counter>,
    parsed: Family<Labels, Counter>,
}

fn grammar_counters() -> &'static GrammarCounters {
    static COUNTERS: OnceLock<GrammarCounters> = OnceLock::new();
    COUNTERS.get_or_init(|| {
        let c = GrammarCounters { failures: Family::default(), parsed: Family::default() };
        let t = crate::metrics::global();
        t.register(
            "model_log_parse_failures",
            "Model-server log lines a grammar could not read, by component and grammar",
            c.failures.clone(),
        );
        t.register(
            "model_log_parsed_events",
            "Model-server log lines read, by component and grammar",
            c.parsed.clone(),
        );
        c
    })
}

impl ParseModelLogConfig {
    pub fn build(&self, metrics: &ComponentMetrics) -> Result<ParseModelLog, ConfigIssue> {
        let choice = match self.format.as_str() {
            "auto" => None,
            name => Some(Grammar::from_name(name).ok_or_else(|| {
                let names: Vec<&str> = Grammar::ALL.iter().map(|g| g.name()).collect();
                let hint = did_you_mean(name, names.iter().copied())
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                ConfigIssue::field(
                    "format",
                    format!(
                        "unknown format `{name}`{hint}: use `auto` or one of {}",
                        names.join(", ")
                    ),
                )
            })?),
        };
        let grammars = Grammars::new(self.timezone.as_deref()).map_err(|e| {
            ConfigIssue::field("timezone", format!("{e}: use `local`, `UTC` or an IANA name"))
        })?;
        let counters = grammar_counters();
        let id = metrics.id().to_string();
        let labels = |g: &str| -> Labels {
            vec![("component_id".into(), id.clone()), ("grammar".into(), g.into())]
        };
        let mut failures = HashMap::new();
        let mut parsed = HashMap::new();
        let candidates: Vec<Grammar> = match choice {
            Some(g) => vec![g],
            None => Grammar::ALL.to_vec(),
        };
        for g in &candidates {
            failures.insert(Some(*g), counters.failures.get_or_create_owned(&labels(g.name())));
            parsed.insert(*g, counters.parsed.get_or_create_owned(&labels(g.name())));
        }
        if choice.is_none() {
            failures.insert(None, counters.failures.get_or_create_owned(&labels("none")));
        }
        Ok(ParseModelLog {
            grammars,
            choice,
            field: parse_field(&self.field, "field")?,
            target: self.target.clone(),
            drop_on_error: self.drop_on_error,
            failed: ParseFailed::new(metrics),
            failures,
            parsed,
            paths: HashMap::new(),
        })
    }
}

/// The transform.
pub struct ParseModelLog {
    grammars: Grammars,
    /// `None` is `auto`.
    choice: Option<Grammar>,
    field: OwnedValuePath,
    target: Option<String>,
    drop_on_error: bool,
    failed: ParseFailed,
    failures: HashMap<Option<Grammar>, Counter>,
    parsed: HashMap<Grammar, Counter>,
    /// Schema paths (under `target`), parsed once each.
    paths: HashMap<&'static str, OwnedValuePath>,
}

/// Why a line was not read, and which grammar it counts against (`None`: no grammar claimed
/// it).
pub struct Failure {
    pub grammar: Option<Grammar>,
    pub reason: String,
}

impl ParseModelLog {
    /// Reads one line: with a fixed format that grammar; with `auto` each grammar that claims
    /// the line, in order, the first success winning.
    pub fn parse_line(&self, text: &str) -> Result<(Grammar, Parsed), Failure> {
        if let Some(g) = self.choice {
            return self
                .grammars
                .parse(g, text)
                .map(|p| (g, p))
                .map_err(|reason| Failure { grammar: Some(g), reason });
        }
        let mut blamed = None;
        for g in Grammar::ALL {
            if !self.grammars.claims(g, text) {
                continue;
            }
            match self.grammars.parse(g, text) {
                Ok(p) => return Ok((g, p)),
                Err(reason) => {
                    if blamed.is_none() {
                        blamed = Some((g, reason));
                    }
                }
            }
        }
        Err(match blamed {
            Some((g, reason)) => {
                Failure { grammar: Some(g), reason: format!("{}: {reason}", g.name()) }
            }
            None => {
                Failure { grammar: None, reason: "no model-server grammar matches the line".into() }
            }
        })
    }

    fn path(&mut self, name: &'static str) -> Option<OwnedValuePath> {
        if let Some(p) = self.paths.get(name) {
            return Some(p.clone());
        }
        let full = match &self.target {
            Some(t) => format!("{t}.{}", quote_segment(name)),
            None => quote_segment(name),
        };
        // Schema names are constants and `target` was checked at build: this cannot fail, and
        // if it did the field would be skipped rather than panic.
        let path = parse_path(&full).ok()?;
        self.paths.insert(name, path.clone());
        Some(path)
    }

    fn apply(&mut self, event: &mut Event, parsed: Parsed) {
        for (name, value) in parsed.fields {
            if let Some(path) = self.path(name) {
                event.insert(&path, value);
            }
        }
        for (key, value) in parsed.extra {
            let mut path = match &self.target {
                Some(t) => parse_path(t).unwrap_or_else(|_| OwnedValuePath::root()),
                None => OwnedValuePath::root(),
            };
            path.push_field(key.as_str());
            event.insert(&path, value);
        }
        event.recompute_size();
    }
}

/// `@timestamp` needs quoting as a path segment; dotted schema names do not.
fn quote_segment(name: &str) -> String {
    if name.starts_with('@') { format!("\"{name}\"") } else { name.to_string() }
}

impl Transform for ParseModelLog {
    fn transform(&mut self, events: Vec<Event>, out: &mut TransformOutput) {
        for mut event in events {
            let text = match event.get(&self.field) {
                Some(v @ (Value::Bytes(_) | Value::String(_))) => {
                    Ok(v.as_bytes().cloned().unwrap_or_default())
                }
                Some(other) => {
                    Err(format!("field `{}` is {}, not a string", self.field, other.kind_str()))
                }
                None => Err(format!("field `{}` is missing", self.field)),
            };
            let result = text.map_err(|reason| Failure { grammar: None, reason }).and_then(
                |bytes: Bytes| {
                    let text = String::from_utf8_lossy(&bytes);
                    self.parse_line(text.trim_end_matches(['\r', '\n']))
                },
            );
            match result {
                Ok((grammar, parsed)) => {
                    if let Some(c) = self.parsed.get(&grammar) {
                        c.inc();
                    }
                    self.apply(&mut event, parsed);
                    out.push(event);
                }
                Err(failure) => {
                    let counter = self
                        .failures
                        .get(&failure.grammar)
                        .or_else(|| self.failures.get(&None))
                        .or_else(|| self.failures.values().next());
                    if let Some(c) = counter {
                        c.inc();
                    }
                    self.failed.emit(&failure.reason);
                    mark_error(&mut event, "parse_model_log", &failure.reason);
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
mod tests;
