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
//! Grammars (`format`), each with the upstream file or page that defines its lines cited at
//! its pattern in [`grammars`]: `torchserve_access` (the access log, with or without the
//! log4j level and thread, any path), `torchserve_metrics` (`ts_metrics.log` and
//! `model_metrics.log` lines, with or without their log4j prefix, as metric events),
//! `triton` (glog lines, `--log-format ISO8601` lines, verbose request lines), `vllm` (engine
//! stats V0 and V1, request lines, the API server's uvicorn access lines with or without the
//! `(APIServer pid=N)` prefix), `bentoml_access`, `bentoml_monitoring` (JSON),
//! `rayserve_access` (2.10's `--` lines and the earlier `file.py:line -` lines, replicas,
//! proxies and the controller), `rayserve_json`, `kserve` (KServe's own logger, its
//! `kserve.trace` lines, its uvicorn access and error lines), `uvicorn` (uvicorn's default
//! access and error formats, as FastAPI apps write them), `gunicorn` (the default access log
//! and the error log), `flask` (werkzeug's access lines, Flask's default app log), `django`
//! (`runserver`'s access lines), `json_prediction` (JSON prediction logs, and JSON logs of
//! Python's python-json-logger and structlog) and `python_logging` (Python `logging` lines:
//! the application's own format when `python.format` is given, else the formats Python
//! writes unconfigured: `logging.basicConfig`'s, the cookbook's `%(asctime)s - %(name)s -
//! %(levelname)s - %(message)s` and a few more; messages of the shape `Input Data: {'f1':
//! 0.75} | Prediction: class_A` give features and predictions; tracebacks give errors).
//!
//! `auto` tries only the grammars that claim a line, by what makes a line theirs (a marker
//! only that server writes, such as TorchServe's `ACCESS_LOG` or vLLM's OpenAI routes, or a
//! shape shared with others, or a generic shape); the surest claims are tried first, so an
//! ambiguous line goes to the most specific grammar (a uvicorn access line of
//! `/v1/chat/completions` is vLLM's; of `/predict`, uvicorn's).
//!
//! An application's own Python format, as written in its code (see [`python_format`]):
//!
//! ```toml
//! [transforms.app_logs]
//! type = "parse_model_log"
//! inputs = ["app"]
//! python.format = "%(asctime)s %(levelname)-8s [%(name)s:%(lineno)d] %(message)s"
//! python.datefmt = "%Y-%m-%dT%H:%M:%S"     # as given to logging.Formatter (default: Python's)
//! python.style = "%"                        # or "{" or "$"
//! ```
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
//! | `event.outcome` | `success` or `failure` (HTTP status ≥ 400, a traceback, an `error` field, `ERROR`/`CRITICAL` on a line about a request) |
//! | `model.name`, `model.version` | from the line, the request path (`/predictions/{m}/{v}`, `/v1/models/{m}:predict`, `/v2/models/{m}/versions/{v}/infer`) or the worker name |
//! | `http.request.id` | the request id, always a string, exact (a `u64` beyond `i64::MAX` is not rounded); placeholders such as Triton's `<id_unknown>` are left out |
//! | `http.request.method`, `url.path`, `url.scheme`, `http.response.status_code`, `http.response.mime_type`, `http.response.body.bytes` | HTTP access fields |
//! | `inference.status_class` | `2xx`, `4xx`, `5xx` ... for HTTP statuses, `ok` / `error` otherwise (a bounded label for metrics) |
//! | `client.address`, `client.ip`, `client.port` | the caller (`client.ip` only when the address is an IP) |
//! | `inference.latency_seconds` | request latency, normalised to seconds from ms, µs, s |
//! | `inference.tokens.prompt`, `inference.tokens.completion` | token counts |
//! | `inference.features.*` | the request's feature values (JSON objects, Python dict literals, BentoML's flat records) |
//! | `inference.prediction`, `inference.score` | the model's output and its score |
//! | `inference.metric.name`, `.value`, `.unit`, `.dimensions` | a TorchServe metric line (time units converted to seconds; dimensions and tags as text) |
//! | `inference.throughput.prompt_tokens_per_second`, `.generation_tokens_per_second`, `inference.requests.running`, `.waiting`, `.swapped`, `inference.gpu_kv_cache_usage`, `inference.cpu_kv_cache_usage`, `inference.prefix_cache_hit_rate` | vLLM engine stats (percentages as ratios 0..1) |
//! | `inference.batch_size`, `inference.timeout_seconds`, `inference.replica`, `inference.application`, `inference.component`, `inference.call`, `inference.engine` | server-specific details |
//! | `log.level`, `log.logger`, `log.origin.function`, `log.origin.file.name`, `log.origin.file.line`, `process.pid`, `process.name`, `process.thread.id`, `process.thread.name`, `host.name`, `host.ip`, `trace.id`, `span.id` | ECS log and process fields |
//! | `message` | a Python record's message (without its traceback) |
//! | `http.version`, `user.name`, `user_agent.original`, `http.request.referrer` | access-log fields (gunicorn) |
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
pub mod python_format;
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
use crate::component::TransformComponent;
use crate::error::{ConfigIssue, did_you_mean};
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
    /// The application's own Python `logging` format, as written in its code.
    #[serde(default)]
    pub python: Option<PythonFormatConfig>,
}

/// `python.format`, `python.datefmt`, `python.style`: the arguments of the application's
/// `logging.Formatter(fmt, datefmt, style)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonFormatConfig {
    /// The `fmt` of the application's `logging.Formatter`, such as
    /// `%(asctime)s %(levelname)s %(name)s: %(message)s`.
    pub format: String,
    /// Its `datefmt` (a strftime format for `%(asctime)s`); default Python's
    /// `%Y-%m-%d %H:%M:%S,<msecs>`.
    #[serde(default)]
    pub datefmt: Option<String>,
    /// `%` (default), `{` or `$`.
    #[serde(default = "default_style")]
    pub style: String,
}

fn default_style() -> String {
    "%".into()
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

impl TransformComponent for ParseModelLogConfig {
    type Built = ParseModelLog;

    fn concurrent(&self) -> bool {
        true
    }

    fn build(&self, metrics: &ComponentMetrics) -> Result<ParseModelLog, ConfigIssue> {
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
        let custom = match &self.python {
            None => None,
            Some(py) => {
                let style = python_format::Style::from_name(&py.style).ok_or_else(|| {
                    ConfigIssue::field(
                        "python.style",
                        format!("unknown style `{}`: use `%`, `{{` or `$`", py.style),
                    )
                })?;
                Some(
                    python_format::PythonFormat::new(
                        &py.format,
                        style,
                        py.datefmt.as_deref(),
                        self.timezone.as_deref(),
                    )
                    .map_err(|e| ConfigIssue::field("python.format", e))?,
                )
            }
        };
        let grammars = Grammars::new(self.timezone.as_deref(), custom).map_err(|e| {
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

    fn outputs(&self) -> Vec<String> {
        vec![crate::transforms::parse::ERRORS_OUTPUT.to_string()]
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
/// it by more than a generic shape).
pub struct Failure {
    pub grammar: Option<Grammar>,
    pub reason: String,
}

impl ParseModelLog {
    /// Reads one line: with a fixed format that grammar; with `auto` each grammar that claims
    /// the line, in order, the first success winning.
    pub fn parse_line(&self, text: &str) -> Result<(Grammar, Parsed), Failure> {
        // werkzeug colours its 4xx and 5xx access lines even into a file.
        let plain;
        let text = if text.contains('\x1b') {
            plain = strip_ansi(text);
            plain.as_str()
        } else {
            text
        };
        if let Some(g) = self.choice {
            return self
                .grammars
                .parse(g, text)
                .map(|p| (g, p))
                .map_err(|reason| Failure { grammar: Some(g), reason });
        }
        let mut blamed = None;
        let mut claimed: Vec<(u8, Grammar)> = Grammar::ALL
            .iter()
            .map(|g| (self.grammars.claims(*g, text), *g))
            .filter(|(surety, _)| *surety > 0)
            .collect();
        // The surest first; among equals, the order of `Grammar::ALL`.
        claimed.sort_by_key(|(surety, _)| std::cmp::Reverse(*surety));
        for (surety, g) in claimed {
            match self.grammars.parse(g, text) {
                Ok(p) => return Ok((g, p)),
                // A generic shape (any JSON, any text) is not a claim worth blaming.
                Err(reason) if surety > 1 && blamed.is_none() => blamed = Some((g, reason)),
                Err(_) => {}
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

    /// The path of schema field `name`, parsed once. Borrowed, not cloned: a clone is an
    /// allocation per segment, for every field of every line.
    fn path(&mut self, name: &'static str) -> Option<&OwnedValuePath> {
        if self.paths.contains_key(name) {
            return self.paths.get(name);
        }
        let full = match &self.target {
            Some(t) => format!("{t}.{}", quote_segment(name)),
            None => quote_segment(name),
        };
        // Schema names are constants and `target` was checked at build: this cannot fail, and
        // if it did the field would be skipped rather than panic.
        let path = parse_path(&full).ok()?;
        Some(self.paths.entry(name).or_insert(path))
    }

    fn apply(&mut self, event: &mut Event, parsed: Parsed) {
        for (name, value) in parsed.fields {
            if let Some(path) = self.path(name) {
                event.insert(path, value);
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

/// `text` without ANSI colour and style sequences (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("\x1b[") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after.find(|c: char| !(c.is_ascii_digit() || c == ';'));
        match end {
            Some(e) if after[e..].starts_with('m') => rest = &after[e + 1..],
            _ => {
                out.push_str("\x1b[");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
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
                    let text = crate::utf8::lossy(&bytes);
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
mod python_property;
#[cfg(test)]
mod tests;
