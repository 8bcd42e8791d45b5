//! The grammars: one per log format of a model server, each mapping a line to the inference
//! event schema documented in [`super`].
//!
//! Every grammar is a function from the line's text to [`Parsed`] (a list of ECS-style paths
//! and values) or an error saying why the line is not of that format. Regular expressions are
//! compiled once per transform; captures are copied only for the fields that are kept.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use ordered_float::NotNan;
use regex::Regex;
use vrl::value::{ObjectMap, Value};

use super::python_format::{self, PythonFormat, Style};
use super::python_literal;
use crate::transforms::parse_json::parse_json;
use crate::transforms::parse_timestamp::TimestampParser;

/// The named grammars, in the order `auto` tries them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grammar {
    TorchserveAccess,
    TorchserveMetrics,
    Triton,
    Vllm,
    BentomlAccess,
    BentomlMonitoring,
    RayserveAccess,
    RayserveJson,
    Kserve,
    Uvicorn,
    Gunicorn,
    Flask,
    Django,
    JsonPrediction,
    PythonLogging,
}

impl Grammar {
    pub const ALL: [Grammar; 15] = [
        Self::TorchserveAccess,
        Self::TorchserveMetrics,
        Self::Triton,
        Self::Vllm,
        Self::BentomlAccess,
        Self::RayserveAccess,
        Self::RayserveJson,
        Self::BentomlMonitoring,
        Self::Kserve,
        Self::Uvicorn,
        Self::Gunicorn,
        Self::Flask,
        Self::Django,
        Self::JsonPrediction,
        Self::PythonLogging,
    ];

    /// The name used in `format = "..."`, in metrics labels and in `event.dataset`.
    pub fn name(self) -> &'static str {
        match self {
            Self::TorchserveAccess => "torchserve_access",
            Self::TorchserveMetrics => "torchserve_metrics",
            Self::Triton => "triton",
            Self::Vllm => "vllm",
            Self::BentomlAccess => "bentoml_access",
            Self::BentomlMonitoring => "bentoml_monitoring",
            Self::RayserveAccess => "rayserve_access",
            Self::RayserveJson => "rayserve_json",
            Self::Kserve => "kserve",
            Self::Uvicorn => "uvicorn",
            Self::Gunicorn => "gunicorn",
            Self::Flask => "flask",
            Self::Django => "django",
            Self::JsonPrediction => "json_prediction",
            Self::PythonLogging => "python_logging",
        }
    }

    /// The server kind, written to `service.name`.
    pub fn server(self) -> &'static str {
        match self {
            Self::TorchserveAccess | Self::TorchserveMetrics => "torchserve",
            Self::Triton => "triton",
            Self::Vllm => "vllm",
            Self::BentomlAccess | Self::BentomlMonitoring => "bentoml",
            Self::RayserveAccess | Self::RayserveJson => "ray_serve",
            Self::Kserve => "kserve",
            Self::Uvicorn => "uvicorn",
            Self::Gunicorn => "gunicorn",
            Self::Flask => "flask",
            Self::Django => "django",
            Self::JsonPrediction => "model_server",
            Self::PythonLogging => "python",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.name() == name)
    }
}

/// What a grammar found: fields by dotted path, in the order they were found.
#[derive(Debug, Default)]
pub struct Parsed {
    pub fields: Vec<(&'static str, Value)>,
    /// Fields of a JSON log that the schema does not name, kept under their own key.
    pub extra: ObjectMap,
}

impl Parsed {
    fn set(&mut self, path: &'static str, value: Value) {
        self.fields.push((path, value));
    }

    fn str(&mut self, path: &'static str, text: &str) {
        self.set(path, Value::Bytes(Bytes::copy_from_slice(text.as_bytes())));
    }

    fn int(&mut self, path: &'static str, text: &str) {
        if let Ok(i) = text.trim().parse::<i64>() {
            self.set(path, Value::Integer(i));
        }
    }

    fn float(&mut self, path: &'static str, f: f64) {
        if let Ok(v) = NotNan::new(f) {
            self.set(path, Value::Float(v));
        }
    }

    fn time(&mut self, t: Option<DateTime<Utc>>) {
        if let Some(t) = t {
            self.set("@timestamp", Value::Timestamp(t));
        }
    }

    /// An HTTP status: the code, its class and the outcome.
    fn http_status(&mut self, code: &str) {
        let Ok(code) = code.parse::<i64>() else { return };
        self.set("http.response.status_code", Value::Integer(code));
        let class = match code {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.str("inference.status_class", class);
        self.str("event.outcome", if code < 400 { "success" } else { "failure" });
    }

    /// A status that is not HTTP (`OK`, `ERROR`).
    fn word_status(&mut self, word: &str) {
        let ok = matches!(word.to_ascii_lowercase().as_str(), "ok" | "success" | "succeeded");
        self.str("inference.status_class", if ok { "ok" } else { "error" });
        self.str("event.outcome", if ok { "success" } else { "failure" });
    }

    fn level(&mut self, level: &str) {
        let level = match level.trim() {
            "I" => "INFO",
            "W" => "WARNING",
            "E" => "ERROR",
            "F" => "FATAL",
            other => other,
        };
        self.str("log.level", level);
    }

    /// The caller; an IPv6 address may come in brackets (`[::1]`, as TorchServe writes it).
    fn client(&mut self, address: &str, port: &str) {
        let address =
            address.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(address);
        self.str("client.address", address);
        if address.parse::<std::net::IpAddr>().is_ok() {
            self.str("client.ip", address);
        }
        self.int("client.port", port);
    }

    /// `ip:port` as uvicorn and gunicorn write it (IPv6 unbracketed: the last colon splits).
    fn client_addr(&mut self, addr: &str) {
        match addr.rsplit_once(':') {
            Some((ip, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty() => {
                self.client(ip, port)
            }
            _ => self.client(addr, ""),
        }
    }

    /// `GET /path HTTP/1.1`: method, path (and model) and protocol version.
    fn request_line(&mut self, line: &str) {
        let mut parts = line.split(' ');
        if let (Some(method), Some(path)) = (parts.next(), parts.next()) {
            self.str("http.request.method", method);
            self.path(path);
            if let Some(v) = parts.next().and_then(|p| p.strip_prefix("HTTP/")) {
                self.str("http.version", v);
            }
        }
    }

    fn has(&self, path: &str) -> bool {
        self.fields.iter().any(|(k, _)| *k == path)
    }

    /// `url.path` (query removed) and, when the path names one, the model and its version.
    fn path(&mut self, path: &str) {
        let path = path.split('?').next().unwrap_or(path);
        self.str("url.path", path);
        if let Some((model, version)) = model_from_path(path) {
            self.str("model.name", model);
            if let Some(v) = version {
                self.str("model.version", v);
            }
        }
    }

    fn latency(&mut self, value: &str, unit: &str) -> bool {
        match (value.trim().parse::<f64>(), unit_scale(unit)) {
            (Ok(v), Some(scale)) => {
                self.float("inference.latency_seconds", v * scale);
                true
            }
            _ => false,
        }
    }

    /// A request id; placeholders (`<id_unknown>`, `-`, `None`) are not ids.
    fn request_id(&mut self, id: &str) {
        let id = id.trim();
        let placeholder = (id.starts_with('<') && id.ends_with('>'))
            || matches!(id, "" | "-" | "None" | "null" | "unknown");
        if !placeholder {
            self.str("http.request.id", id);
        }
    }
}

/// Seconds per unit: `ms` -> 0.001.
fn unit_scale(unit: &str) -> Option<f64> {
    Some(match unit.trim().to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "ms" | "millisecond" | "milliseconds" => 1e-3,
        "us" | "µs" | "μs" | "microsecond" | "microseconds" => 1e-6,
        "ns" | "nanosecond" | "nanoseconds" => 1e-9,
        _ => return None,
    })
}

/// The model (and version) a request path names, for the inference APIs model servers share:
/// TorchServe's `/predictions/{m}[/{v}]` and `/explanations/...`, KServe v1
/// `/v1/models/{m}[/versions/{v}]:predict`, Open Inference Protocol (Triton, KServe v2)
/// `/v2/models/{m}[/versions/{v}]/infer`.
pub fn model_from_path(path: &str) -> Option<(&str, Option<&str>)> {
    let mut parts = path.trim_start_matches('/').split('/');
    match parts.next()? {
        "predictions" | "explanations" => {
            let model = parts.next().filter(|m| !m.is_empty())?;
            Some((model, parts.next().filter(|v| !v.is_empty())))
        }
        "v1" | "v2" => {
            if parts.next()? != "models" {
                return None;
            }
            let raw = parts.next()?;
            let model = raw.split(':').next().filter(|m| !m.is_empty())?;
            let version = match parts.next() {
                Some("versions") => parts.next().map(|v| v.split(':').next().unwrap_or(v)),
                _ => None,
            };
            Some((model, version))
        }
        _ => None,
    }
}

/// HTTP methods by libevhtp's `htp_method` number, which Triton's verbose log prints.
fn evhtp_method(code: &str) -> Option<&'static str> {
    Some(match code {
        "0" => "GET",
        "1" => "HEAD",
        "2" => "POST",
        "3" => "PUT",
        "4" => "DELETE",
        "8" => "OPTIONS",
        "13" => "TRACE",
        "14" => "CONNECT",
        "15" => "PATCH",
        _ => return None,
    })
}

/// Compiled regular expressions and time parsers of every grammar.
pub struct Grammars {
    torchserve_access: Regex,
    torchserve_metrics: Regex,
    torchserve_worker: Regex,
    triton: Regex,
    triton_http: Regex,
    triton_prepared: Regex,
    triton_load: Regex,
    vllm: Regex,
    vllm_uvicorn: Regex,
    vllm_stats: Regex,
    vllm_request: Regex,
    vllm_prompt_ids: Regex,
    bentoml_access: Regex,
    rayserve_access: Regex,
    ray_access_message: Regex,
    kserve_claim: Regex,
    kserve: Vec<PythonFormat>,
    kserve_trace: Regex,
    torchserve_access_claim: Regex,
    torchserve_metrics_claim: Regex,
    triton_iso: Regex,
    vllm_claim: Regex,
    openai_path: Regex,
    uvicorn: [PythonFormat; 2],
    gunicorn_access: Regex,
    gunicorn_error: Regex,
    werkzeug: Regex,
    flask_app: PythonFormat,
    django: Regex,
    status_tail: Regex,
    rayserve_claim: Regex,
    /// `format = "python"`'s own format (`python.format`), tried before the presets.
    python_custom: Option<PythonFormat>,
    /// The formats Python applications write without configuring anything.
    python_presets: Vec<PythonFormat>,
    python_label: Regex,
    latency_text: Regex,
    /// Python's `2018-10-15 13:56:18,976` and its `T` variant, with or without a zone.
    python_time: TimestampParser,
    glog_time: TimestampParser,
    vllm_time: TimestampParser,
    iso_time: TimestampParser,
}

fn re(pattern: &str) -> Regex {
    // The patterns are constants of this file, compiled by the unit tests: a failure here is a
    // programming error caught before release, not an input error.
    compile(pattern).unwrap_or_else(|e| panic!("built-in pattern {pattern}: {e}"))
}

/// Compiles a grammar's pattern with `\d` and `\s` meaning ASCII digits and whitespace, as the
/// servers write them: their Unicode classes make each automaton several times larger, and
/// reading captures costs in proportion.
pub(super) fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    let mut ascii = String::with_capacity(pattern.len() + 32);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            ascii.push(c);
            continue;
        }
        match chars.next() {
            // Nested classes are valid inside a class (`[\d.]`) as well as outside.
            Some('d') => ascii.push_str("[0-9]"),
            Some('s') => ascii.push_str(r"[\t\n\x0B\x0C\r ]"),
            Some(other) => {
                ascii.push('\\');
                ascii.push(other);
            }
            None => ascii.push('\\'),
        }
    }
    Regex::new(&ascii)
}

const PY_TS: &str = r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[,.]\d{1,6})?";

impl Grammars {
    /// Compiles everything; `timezone` is for timestamps that carry no zone; `custom` is an
    /// application's own `logging.Formatter` format.
    pub fn new(timezone: Option<&str>, custom: Option<PythonFormat>) -> Result<Self, String> {
        let py = |fmt: &str, datefmt: Option<&str>| {
            PythonFormat::new(fmt, Style::Percent, datefmt, timezone)
        };
        // kserve/kserve python/kserve/kserve/logging.py: KSERVE_LOGGER_FORMAT (with and,
        // in older releases, without the file name), KSERVE_TRACE_LOGGER_FORMAT and the
        // uvicorn formatters of KSERVE_LOG_CONFIG (with the process id in newer releases, as
        // the trace format), all with KSERVE_LOGGER_DATE_FORMAT.
        let kserve_date = Some("%Y-%m-%d %H:%M:%S");
        let kserve = vec![
            py(
                "%(asctime)s.%(msecs)03d %(name)s %(levelprefix)s %(client_addr)s %(process)s - \"%(request_line)s\" %(status_code)s",
                kserve_date,
            )?,
            py(
                "%(asctime)s.%(msecs)03d %(name)s %(levelprefix)s %(client_addr)s - \"%(request_line)s\" %(status_code)s",
                kserve_date,
            )?,
            py(
                "%(asctime)s.%(msecs)03d %(process)s %(name)s %(levelname)s [%(filename)s:%(funcName)s():%(lineno)s] %(message)s",
                kserve_date,
            )?,
            py(
                "%(asctime)s.%(msecs)03d %(process)s %(name)s %(levelname)s [%(funcName)s():%(lineno)s] %(message)s",
                kserve_date,
            )?,
            py(
                "%(asctime)s.%(msecs)03d %(process)s %(name)s %(levelprefix)s %(message)s",
                kserve_date,
            )?,
            py("%(asctime)s.%(msecs)03d %(name)s %(levelprefix)s %(message)s", kserve_date)?,
            py("%(asctime)s.%(msecs)03d %(process)s %(name)s %(message)s", kserve_date)?,
            py("%(asctime)s.%(msecs)03d %(name)s %(message)s", kserve_date)?,
        ];
        // encode/uvicorn uvicorn/config.py LOGGING_CONFIG: the default and access formatters.
        let uvicorn = [
            py("%(levelprefix)s %(client_addr)s - \"%(request_line)s\" %(status_code)s", None)?,
            py("%(levelprefix)s %(message)s", None)?,
        ];
        let python_presets = vec![
            // weir's long-standing shape (TorchServe's model log writes the same).
            py("%(asctime)s [%(levelname)-5s] %(name)s: %(message)s", None)?,
            // The logging cookbook's and most tutorials' format.
            py("%(asctime)s - %(name)s - %(levelname)s - %(message)s", None)?,
            py("%(asctime)s - %(levelname)s - %(message)s", None)?,
            py("%(asctime)s %(levelname)s %(name)s: %(message)s", None)?,
            py("%(asctime)s %(levelname)-8s %(name)s %(message)s", None)?,
            py("[%(asctime)s] [%(levelname)s] %(name)s: %(message)s", None)?,
            // logging.BASIC_FORMAT, what `logging.basicConfig()` writes.
            py("%(levelname)s:%(name)s:%(message)s", None)?,
        ];
        let python_time = TimestampParser::new(
            &[
                "%Y-%m-%d %H:%M:%S,%3f",
                "%Y-%m-%dT%H:%M:%S,%3f",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S",
            ],
            timezone,
        )?;
        Ok(Self {
            torchserve_access: re(&format!(
                r#"^(?P<ts>{PY_TS})(?: \[(?P<level>[A-Z]+)\s*\] (?P<thread>\S+) ACCESS_LOG)? - /(?P<ip>\S+):(?P<port>\d+) "(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{{3}}) (?P<ms>\d+(?:\.\d+)?)\s*$"#
            )),
            // pytorch/serve frontend/server/src/main/resources/log4j2.xml: `ts_metrics.log` and
            // `model_metrics.log` are `%d{ISO8601} - %m%n`, the console `%d{ISO8601} [%-5p] %t
            // %c - %m%n`; the message is docs/metrics.md's `Name.Unit:Value|#dims|#tags`.
            torchserve_metrics: re(&format!(
                r"^(?:(?P<ts>{PY_TS})(?: \[(?P<level>[A-Z]+)\s*\] (?P<thread>\S+) (?:MODEL_METRICS|TS_METRICS))? - )?(?P<name>[^|:\s]+)\.(?P<unit>[A-Za-z]+):(?P<value>[-+0-9.eE]+)\|#(?P<dims>[^|]*)(?:\|#(?P<tags>.*?))?\s*$"
            )),
            torchserve_worker: re(r"^W-\d+-(?P<model>.+)_(?P<version>[^_]+?)(?:-stdout|-stderr)?$"),
            triton: re(
                r"^(?P<sev>[IWEF])(?P<ts>\d{4} \d{2}:\d{2}:\d{2}\.\d{6})\s+(?P<tid>\d+) (?P<file>[^:\s]+):(?P<line>\d+)\] (?P<msg>.*)$",
            ),
            triton_http: re(r"^HTTP request: (?P<method>\d+) (?P<path>\S+)"),
            triton_prepared: re(
                r"^\[request id: (?P<rid>[^\]]*)\] prepared: .*?model: (?P<model>[^,]+), requested version: -?\d+, actual version: (?P<version>-?\d+)(?:.*?batch size: (?P<batch>\d+))?(?:.*?timeout \(us\): (?P<timeout>\d+))?",
            ),
            triton_load: re(r#"^"?(?:AsyncLoad|AsyncUnload)\(\) '(?P<model>[^']+)'"#),
            vllm: re(
                r"^(?:\((?P<proc>[\w-]+) pid=(?P<pid>\d+)\) )?(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) (?P<ts>\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?:\.\d+)? \[?(?P<file>[^:\]\s]+):(?P<line>\d+)\] (?P<msg>.*)$",
            ),
            vllm_uvicorn: re(
                r#"^(?:\((?P<proc>[\w-]+) pid=(?P<pid>\d+)\) )?(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL):\s+(?P<ip>\S+):(?P<port>\d+) - "(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})(?: .*)?$"#,
            ),
            vllm_stats: re(
                r"^(?:Engine (?P<engine>\d+): )?Avg prompt throughput: (?P<pt>[\d.]+) tokens/s, Avg generation throughput: (?P<gt>[\d.]+) tokens/s, Running: (?P<run>\d+) reqs, (?:Swapped: (?P<sw>\d+) reqs, )?(?:Pending|Waiting): (?P<wait>\d+) reqs, GPU KV cache usage: (?P<gpu>[\d.]+)%(?:, CPU KV cache usage: (?P<cpu>[\d.]+)%)?(?:, Prefix cache hit rate: (?P<pch>[\d.]+)%)?",
            ),
            vllm_request: re(
                r"^(?P<what>Added|Finished|Aborted|Received) request (?P<rid>[^\s:]+?)\.?(?::|$)",
            ),
            vllm_prompt_ids: re(r"prompt_token_ids: \[(?P<ids>[^\]]*)\]"),
            bentoml_access: re(
                r"^(?P<ts>\S+) \[(?P<level>[A-Z]+)\] \[(?P<comp>[^\]]*)\] (?P<client>\S+?)(?::(?P<port>\d+))? \((?P<req>[^)]*)\) \((?P<resp>[^)]*)\) (?P<lat>[\d.]+)(?P<unit>ms|s|us|µs) \((?P<trace>[^)]*)\)\s*$",
            ),
            // ray-project/ray python/ray/serve/_private/logging_utils.py ServeFormatter and
            // constants.py SERVE_LOG_RECORD_FORMAT: `%(levelname)s %(asctime)s {component_name}
            // {component_id} ` then, when the record has them, `%(request_id)s` and (before 2.10)
            // `%(route)s`, then `-- %(message)s` (2.10 on) or `%(filename)s:%(lineno)d -
            // %(message)s` (before).
            rayserve_access: re(
                r"(?s)^(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) (?P<ts>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}) (?P<comp>\S+) (?P<cid>\S+) (?:(?P<rid>[^\s/]\S*) )?(?:(?P<route>/\S*) )?(?:-- |(?P<file>[\w.-]+\.py):(?P<line>\d+) - )(?P<msg>.*)$",
            ),
            // The access message: `GET / 200 4.1ms`, `CALL method OK 1.3ms` for handle calls,
            // `__CALL__ OK 30.7ms` before 2.10.
            ray_access_message: re(
                r"^(?:(?P<method>[A-Z]+) )?(?P<route>\S+) (?P<status>\d{3}|OK|ERROR) (?P<lat>[\d.]+)(?P<unit>ms|s|us)$",
            ),
            kserve_claim: re(
                r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} (?:\d+ )?(?:kserve|uvicorn)[.\w]* ",
            ),
            kserve,
            // kserve/kserve python/kserve/kserve/model.py: the trace logger's per-request line.
            kserve_trace: re(
                r"requestId: (?P<rid>[^,]+), preprocess_ms: (?P<pre>[\d.]+), explain_ms: (?P<exp>[\d.]+), predict_ms: (?P<pred>[\d.]+), postprocess_ms: (?P<post>[\d.]+)",
            ),
            torchserve_access_claim: re(&format!(
                r#"^{PY_TS}(?: \[[A-Z]+\s*\] \S+ ACCESS_LOG)? - /\S+:\d+ "[A-Z]+ "#
            )),
            torchserve_metrics_claim: re(r"^(?:[^|]* - )?[\w-]+\.[A-Za-z]+:[-+\d.eE]+\|#"),
            // triton-inference-server/core src/logging.cc, LogMessage with `--log-format
            // ISO8601`: `YYYY-MM-DDThh:mm:ssZ <severity> <pid> <file>:<line>] <message>`.
            triton_iso: re(
                r"^(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z) (?P<sev>[IWEFV]) (?P<tid>\d+) (?P<file>[^:\s]+):(?P<line>\d+)\] (?P<msg>.*)$",
            ),
            vllm_claim: re(
                r"^(?:\([\w-]+ pid=\d+\) |(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) \d{2}-\d{2} \d{2}:\d{2}:\d{2})",
            ),
            // vLLM's OpenAI-compatible server (vllm/entrypoints/openai/api_server.py) routes.
            openai_path: re(
                r#" - "[A-Z]+ /(?:v1/(?:chat/completions|completions|embeddings|responses|score|rerank|audio/\S+|models)|tokenize|detokenize|invocations|pooling|classify)[?/ "]"#,
            ),
            uvicorn,
            // benoitc/gunicorn gunicorn/config.py AccessLogFormat default:
            // `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"`.
            gunicorn_access: re(
                r#"^(?P<h>\S+) (?P<l>\S+) (?P<u>\S+) \[(?P<t>\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [-+]\d{4})\] "(?P<r>[^"]*)" (?P<s>\d{3}) (?P<b>\d+|-)(?: "(?P<f>[^"]*)" "(?P<a>[^"]*)")?(?: (?P<rest>.*))?$"#,
            ),
            // gunicorn/glogging.py: `%(asctime)s [%(process)d] [%(levelname)s] %(message)s`
            // with datefmt `[%Y-%m-%d %H:%M:%S %z]`.
            gunicorn_error: re(
                r"(?s)^\[(?P<t>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [-+]\d{4})\] \[(?P<pid>\d+)\] \[(?P<level>[A-Z]+)\] (?P<msg>.*)$",
            ),
            // pallets/werkzeug src/werkzeug/serving.py WSGIRequestHandler.log:
            // `%s - - [%s] %s` with `log_date_time_string()`, then `"%s" %s %s`.
            werkzeug: re(
                r#"^(?P<ip>\S+) - - \[(?P<t>\d{2}/\w{3}/\d{4} \d{2}:\d{2}:\d{2})\] "(?P<r>[^"]*)" (?P<s>\d{3}) (?P<b>\d+|-)\s*$"#,
            ),
            // pallets/flask src/flask/logging.py default_handler.
            flask_app: py("[%(asctime)s] %(levelname)s in %(module)s: %(message)s", None)?,
            // django/django django/utils/log.py DEFAULT_LOGGING `django.server` formatter:
            // `[{server_time}] {message}`, the message `"%s" %s %s` (core/servers/basehttp.py).
            django: re(
                r#"^\[(?P<t>\d{2}/\w{3}/\d{4} \d{2}:\d{2}:\d{2})\] "(?P<r>[^"]*)" (?P<s>\d{3}) (?P<b>\d+|-)\s*$"#,
            ),
            status_tail: re(r"^(?P<code>\d{3})"),
            rayserve_claim: re(
                r"^(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} \S+ \S+ ",
            ),
            python_custom: custom,
            python_presets,
            python_label: re(
                r"(?i)(?:^|\|\s*|,\s*)(?P<label>input data|inputs?|features|prediction|predicted|output|latency|duration|inference time|model version|model|version|request[ _]id|probability|score|confidence)\s*[:=]\s*",
            ),
            latency_text: re(r"^(?P<v>[\d.]+)\s*(?P<u>ms|s|us|µs|seconds|milliseconds)?"),
            python_time,
            glog_time: TimestampParser::new(&["%m%d %H:%M:%S%.6f"], timezone)?,
            vllm_time: TimestampParser::new(&["%m-%d %H:%M:%S"], timezone)?,
            iso_time: TimestampParser::new(
                &[
                    "rfc3339",
                    "%Y-%m-%dT%H:%M:%S%z",
                    "%Y-%m-%dT%H:%M:%S%.f%z",
                    "%Y-%m-%dT%H:%M:%S%.f",
                    "%Y-%m-%dT%H:%M:%S",
                    "%Y-%m-%d %H:%M:%S,%3f",
                    "%Y-%m-%d %H:%M:%S%.f",
                    "%Y-%m-%d %H:%M:%S",
                    "unix",
                ],
                timezone,
            )?,
        })
    }

    /// Replaces the clock that resolves year-less timestamps (for tests).
    #[cfg(test)]
    pub fn with_clock(mut self, now: fn() -> DateTime<Utc>) -> Self {
        self.glog_time = self.glog_time.with_clock(now);
        self.vllm_time = self.vllm_time.with_clock(now);
        self
    }

    /// How surely `text` is of `grammar`'s format, by what makes a line that grammar's own:
    /// 0 not at all, 1 a generic shape (any JSON, any Python line), 2 a server's default shape
    /// that others share (uvicorn's access line), 3 a mark no other server writes. `auto`
    /// tries the grammars that claim a line, the surest first, and blames the first of them
    /// when none reads it.
    pub fn claims(&self, grammar: Grammar, text: &str) -> u8 {
        let json = text.trim_start().starts_with('{');
        let sure = |b: bool| if b { 3 } else { 0 };
        match grammar {
            Grammar::TorchserveAccess => {
                if text.contains("ACCESS_LOG - ") || self.torchserve_access_claim.is_match(text) {
                    3
                } else {
                    u8::from(text.contains("/predictions/"))
                }
            }
            Grammar::TorchserveMetrics => {
                sure(text.contains("_METRICS - ") || self.torchserve_metrics_claim.is_match(text))
            }
            Grammar::Triton => {
                let b = text.as_bytes();
                let glog = b.len() > 22
                    && matches!(b[0], b'I' | b'W' | b'E' | b'F')
                    && b[1..5].iter().all(u8::is_ascii_digit)
                    && b[5] == b' ';
                sure(glog || self.triton_iso.is_match(text))
            }
            Grammar::Vllm => sure(
                self.vllm_claim.is_match(text)
                    || (self.openai_path.is_match(text) && !text.contains(":predict")),
            ),
            Grammar::BentomlAccess => sure(text.contains("(scheme=")),
            // BentoML's records are flat: no feature object, no logging fields.
            Grammar::BentomlMonitoring => {
                let flat = json
                    && [
                        "\"features\"",
                        "\"inputs\"",
                        "\"replica\"",
                        "\"model",
                        "\"level",
                        "\"message\"",
                        "\"event\"",
                    ]
                    .iter()
                    .all(|k| !text.contains(k));
                if flat { 2 } else { 0 }
            }
            Grammar::RayserveAccess => sure(self.rayserve_claim.is_match(text)),
            // ServeJSONFormatter (ray python/ray/serve/_private/logging_utils.py): replicas
            // write `replica`, every component `component_name`.
            Grammar::RayserveJson => {
                sure(json && (text.contains("\"replica\"") || text.contains("\"component_name\"")))
            }
            Grammar::Kserve => sure(self.kserve_claim.is_match(text)),
            Grammar::Uvicorn => {
                let b = text.as_bytes();
                let level = b.iter().take_while(|c| c.is_ascii_uppercase()).count();
                if level >= 4 && b.get(level) == Some(&b':') && b.get(level + 1) == Some(&b' ') {
                    2
                } else {
                    0
                }
            }
            Grammar::Gunicorn => {
                sure(self.gunicorn_access.is_match(text) || self.gunicorn_error.is_match(text))
            }
            Grammar::Flask => sure(self.werkzeug.is_match(text) || self.flask_app.matches(text)),
            Grammar::Django => sure(self.django.is_match(text)),
            Grammar::JsonPrediction => u8::from(json),
            Grammar::PythonLogging => {
                if self.python_custom.as_ref().is_some_and(|f| f.matches(text)) {
                    4
                } else {
                    u8::from(!json && text.len() > 8)
                }
            }
        }
    }

    /// Parses `text` as `grammar`.
    pub fn parse(&self, grammar: Grammar, text: &str) -> Result<Parsed, String> {
        let mut p = Parsed::default();
        match grammar {
            Grammar::TorchserveAccess => self.torchserve_access(text, &mut p)?,
            Grammar::TorchserveMetrics => self.torchserve_metrics(text, &mut p)?,
            Grammar::Triton => self.triton(text, &mut p)?,
            Grammar::Vllm => self.vllm(text, &mut p)?,
            Grammar::BentomlAccess => self.bentoml_access(text, &mut p)?,
            Grammar::BentomlMonitoring => self.json(text, &mut p, JsonShape::BentomlMonitoring)?,
            Grammar::RayserveAccess => self.rayserve_access(text, &mut p)?,
            Grammar::RayserveJson => self.json(text, &mut p, JsonShape::RayServe)?,
            Grammar::Kserve => self.kserve(text, &mut p)?,
            Grammar::Uvicorn => self.uvicorn(text, &mut p)?,
            Grammar::Gunicorn => self.gunicorn(text, &mut p)?,
            Grammar::Flask => self.flask(text, &mut p)?,
            Grammar::Django => self.django(text, &mut p)?,
            Grammar::JsonPrediction => self.json(text, &mut p, JsonShape::Prediction)?,
            Grammar::PythonLogging => self.python_logging(text, &mut p)?,
        }
        // An error about a request is a failed request.
        let error = p.fields.iter().any(|(k, v)| {
            *k == "log.level"
                && matches!(v.to_str_lossy().as_deref(), Some("ERROR" | "CRITICAL" | "FATAL"))
        });
        let about_request = p.has("http.request.id")
            || p.fields.iter().any(|(k, v)| {
                *k == "event.action"
                    && v.to_str_lossy()
                        .is_some_and(|a| a.starts_with("request") || a.starts_with("predict"))
            });
        if error && about_request && !p.has("event.outcome") {
            p.str("inference.status_class", "error");
            p.str("event.outcome", "failure");
        }
        p.str("service.name", grammar.server());
        p.str("event.dataset", grammar.name());
        Ok(p)
    }

    fn torchserve_access(&self, text: &str, p: &mut Parsed) -> Result<(), String> {
        let c = self.torchserve_access.captures(text).ok_or("not a TorchServe access line")?;
        p.time(self.python_time.parse_text(&c["ts"]));
        if let Some(level) = c.name("level") {
            p.level(level.as_str());
        }
        if let Some(thread) = c.name("thread") {
            p.str("process.thread.name", thread.as_str());
        }
        p.client(&c["ip"], &c["port"]);
        p.str("http.request.method", &c["method"]);
        p.path(&c["path"]);
        p.http_status(&c["status"]);
        p.latency(&c["ms"], "ms");
        p.str("event.action", "request");
        Ok(())
    }

    fn torchserve_metrics(&self, text: &str, p: &mut Parsed) -> Result<(), String> {
        let c = self.torchserve_metrics.captures(text).ok_or("not a TorchServe metrics line")?;
        if let Some(ts) = c.name("ts") {
            p.time(self.python_time.parse_text(ts.as_str()));
        }
        if let Some(level) = c.name("level") {
            p.level(level.as_str());
        }
        let thread = c.name("thread").map_or("", |m| m.as_str());
        if !thread.is_empty() {
            p.str("process.thread.name", thread);
        }
        let value: f64 = c["value"]
            .parse()
            .map_err(|_| format!("metric value `{}` is not a number", &c["value"]))?;
        let name = &c["name"];
        let unit = &c["unit"];
        p.str("inference.metric.name", name);
        // Time units are normalised to seconds.
        match unit_scale(unit) {
            Some(scale) => {
                p.float("inference.metric.value", value * scale);
                p.str("inference.metric.unit", "seconds");
                if name == "PredictionTime" || name.ends_with("Latency") {
                    p.float("inference.latency_seconds", value * scale);
                }
            }
            None => {
                p.float("inference.metric.value", value);
                p.str("inference.metric.unit", unit);
            }
        }
        let (mut model, mut version) = (None, None);
        let tags = c.name("tags").map_or("", |m| m.as_str());
        let mut dimensions = ObjectMap::new();
        for (k, v) in kv_pairs(&c["dims"], ',', ':').chain(kv_pairs(tags, ',', ':')) {
            if k != "timestamp" {
                dimensions.insert(k.into(), Value::from(v.to_string()));
            }
            match k {
                // A metrics file's own time, when the line has no log4j date before it.
                "timestamp" if !p.has("@timestamp") => {
                    p.time(v.parse::<i64>().ok().and_then(|t| DateTime::from_timestamp(t, 0)))
                }
                "ModelName" | "model_name" => model = Some(v),
                "ModelVersion" | "model_version" => version = Some(v),
                "Level" => p.str("inference.metric.level", v),
                "hostname" => p.str("host.name", v),
                "requestID" | "request_id" => p.request_id(v),
                _ => {}
            }
        }
        if !dimensions.is_empty() {
            p.set("inference.metric.dimensions", Value::Object(dimensions));
        }
        if let Some(w) = self.torchserve_worker.captures(thread) {
            model = model.or(w.name("model").map(|m| m.as_str()));
            version = version.or(w.name("version").map(|m| m.as_str()));
        }
        if let Some(m) = model {
            p.str("model.name", m);
        }
        if let Some(v) = version {
            p.str("model.version", v);
        }
        p.str("event.kind", "metric");
        p.str("event.action", "metric");
        Ok(())
    }

    fn triton(&self, text: &str, p: &mut Parsed) -> Result<(), String> {
        let (c, iso) = match self.triton.captures(text) {
            Some(c) => (c, false),
            None => {
                (self.triton_iso.captures(text).ok_or("not a Triton (glog or ISO8601) line")?, true)
            }
        };
        p.level(&c["sev"]);
        if iso {
            p.time(self.iso_time.parse_text(&c["ts"]));
        } else {
            p.time(self.glog_time.parse_text(&c["ts"]));
        }
        p.int("process.thread.id", &c["tid"]);
        p.str("log.origin.file.name", &c["file"]);
        p.int("log.origin.file.line", &c["line"]);
        let msg = &c["msg"];
        if let Some(h) = self.triton_http.captures(msg) {
            if let Some(m) = evhtp_method(&h["method"]) {
                p.str("http.request.method", m);
            }
            p.path(&h["path"]);
            p.str("event.action", "request_received");
        } else if let Some(r) = self.triton_prepared.captures(msg) {
            p.request_id(&r["rid"]);
            p.str("model.name", r["model"].trim());
            p.str("model.version", &r["version"]);
            if let Some(b) = r.name("batch") {
                p.int("inference.batch_size", b.as_str());
            }
            if let Some(t) = r.name("timeout") {
                p.latency(t.as_str(), "us");
                // That was a timeout, not a latency: move it.
                if let Some(last) = p.fields.last_mut() {
                    last.0 = "inference.timeout_seconds";
                }
            }
            p.str("event.action", "request_prepared");
        } else if let Some(l) = self.triton_load.captures(msg) {
            p.str("model.name", &l["model"]);
            p.str("event.action", "model_load");
        } else {
            p.str("event.action", "log");
        }
        if c["sev"].starts_with(['E', 'F']) {
            p.str("error.message", msg.trim_matches('"'));
        }
        Ok(())
    }

    fn vllm(&self, text: &str, p: &mut Parsed) -> Result<(), String> {
        if let Some(c) = self.vllm_uvicorn.captures(text) {
            if let Some(pid) = c.name("pid") {
                p.int("process.pid", pid.as_str());
                p.str("process.name", &c["proc"]);
            }
            p.level(&c["level"]);
            p.client(&c["ip"], &c["port"]);
            p.str("http.request.method", &c["method"]);
            p.path(&c["path"]);
            p.http_status(&c["status"]);
            p.str("event.action", "request");
            return Ok(());
        }
        let c = self.vllm.captures(text).ok_or("not a vLLM line")?;
        if let Some(pid) = c.name("pid") {
            p.int("process.pid", pid.as_str());
            p.str("process.name", &c["proc"]);
        }
        p.level(&c["level"]);
        p.time(self.vllm_time.parse_text(&c["ts"]));
        p.str("log.origin.file.name", &c["file"]);
        p.int("log.origin.file.line", &c["line"]);
        let msg = &c["msg"];
        if let Some(s) = self.vllm_stats.captures(msg) {
            let num = |n: &str| s.name(n).and_then(|m| m.as_str().parse::<f64>().ok());
            if let Some(e) = s.name("engine") {
                p.int("inference.engine", e.as_str());
            }
            for (name, path, scale) in [
                ("pt", "inference.throughput.prompt_tokens_per_second", 1.0),
                ("gt", "inference.throughput.generation_tokens_per_second", 1.0),
                ("run", "inference.requests.running", 1.0),
                ("sw", "inference.requests.swapped", 1.0),
                ("wait", "inference.requests.waiting", 1.0),
                // Percentages become ratios.
                ("gpu", "inference.gpu_kv_cache_usage", 0.01),
                ("cpu", "inference.cpu_kv_cache_usage", 0.01),
                ("pch", "inference.prefix_cache_hit_rate", 0.01),
            ] {
                if let Some(v) = num(name) {
                    if matches!(name, "run" | "sw" | "wait") {
                        p.set(path, Value::Integer(v as i64));
                    } else {
                        p.float(path, v * scale);
                    }
                }
            }
            p.str("event.kind", "metric");
            p.str("event.action", "stats");
        } else if let Some(r) = self.vllm_request.captures(msg) {
            p.request_id(&r["rid"]);
            let action = match &r["what"] {
                "Added" | "Received" => "request_received",
                "Finished" => "request_finished",
                _ => "request_aborted",
            };
            if action == "request_aborted" {
                p.str("event.outcome", "failure");
            }
            if let Some(ids) = self.vllm_prompt_ids.captures(msg) {
                let n = ids["ids"].split(',').filter(|s| !s.trim().is_empty()).count();
                p.set("inference.tokens.prompt", Value::Integer(n as i64));
            }
            p.str("event.action", action);
        } else {
            p.str("event.action", "log");
        }
        Ok(())
    }

    fn bentoml_access(&self, text: &str, p: &mut Parsed) -> Result<(), String> {
        let c = self.bentoml_access.captures(text).ok_or("not a BentoML access line")?;
        p.time(self.iso_time.parse_text(&c["ts"]));
        p.level(&c["level"]);
        let mut comp = c["comp"].split(':');
        if let Some(kind) = comp.next() {
            p.str("inference.component", kind);
        }
        if let Some(service) = comp.next() {
            p.str("model.name", service);
        }
        p.client(&c["client"], c.name("port").map_or("", |m| m.as_str()));
        for (k, v) in kv_pairs(&c["req"], ',', '=') {
            match k {
                "scheme" if !v.is_empty() => p.str("url.scheme", v),
                "method" if !v.is_empty() => p.str("http.request.method", v),
                "path" if !v.is_empty() => p.path(v),
                "type" if !v.is_empty() => p.str("http.request.mime_type", v),
                "length" => p.int("http.request.body.bytes", v),
                _ => {}
            }
        }
        for (k, v) in kv_pairs(&c["resp"], ',', '=') {
            match k {
                "status" => p.http_status(v),
                "type" if !v.is_empty() => p.str("http.response.mime_type", v),
                "length" => p.int("http.response.body.bytes", v),
                _ => {}
            }
        }
        p.latency(&c["lat"], &c["unit"]);
        for (k, v) in kv_pairs(&c["trace"], ',', '=') {
            match k {
                "trace" if v != "0" && !v.is_empty() => p.str("trace.id", v),
                "span" if v != "0" && !v.is_empty() => p.str("span.id", v),
                _ => {}
            }
        }
        p.str("event.action", "request");
        Ok(())
    }

    fn rayserve_access(&self, text: &str, p: &mut Parsed) -> Result<(), String> {
        let c = self.rayserve_access.captures(text).ok_or("not a Ray Serve log line")?;
        p.level(&c["level"]);
        p.time(self.python_time.parse_text(&c["ts"]));
        let (comp, cid) = (&c["comp"], &c["cid"]);
        match comp {
            // The controller's id is its process id; a proxy's is its node's address.
            "controller" => {
                p.str("inference.component", "controller");
                p.int("process.pid", cid);
            }
            "proxy" | "http_proxy" | "grpc_proxy" => {
                p.str("inference.component", "proxy");
                if cid.parse::<std::net::IpAddr>().is_ok() {
                    p.str("host.ip", cid);
                }
            }
            deployment => {
                p.str("inference.component", "replica");
                p.str("model.name", deployment);
                p.str("inference.replica", cid);
            }
        }
        if let Some(rid) = c.name("rid") {
            p.request_id(rid.as_str());
        }
        if let Some(route) = c.name("route") {
            p.str("url.path", route.as_str());
        }
        if let Some(file) = c.name("file") {
            p.str("log.origin.file.name", file.as_str());
            p.int("log.origin.file.line", &c["line"]);
        }
        self.ray_message(&c["msg"], p);
        Ok(())
    }

    /// Ray's access message: `GET / 200 4.1ms`, or `CALL method OK 1.3ms` for handle calls.
    fn ray_message(&self, msg: &str, p: &mut Parsed) {
        match self.ray_access_message.captures(msg) {
            Some(a) => {
                match a.name("method").map(|m| m.as_str()) {
                    Some("CALL") | None => p.str("inference.call", &a["route"]),
                    Some(method) => {
                        p.str("http.request.method", method);
                        if !p.has("url.path") {
                            p.str("url.path", &a["route"]);
                        }
                    }
                }
                match a["status"].parse::<u16>() {
                    Ok(_) => p.http_status(&a["status"]),
                    Err(_) => p.word_status(&a["status"]),
                }
                p.latency(&a["lat"], &a["unit"]);
                p.str("event.action", "request");
            }
            None => p.str("event.action", "log"),
        }
    }

    fn kserve(&self, text: &str, p: &mut Parsed) -> Result<(), String> {
        let (f, r) = self
            .kserve
            .iter()
            .find_map(|f| f.read(text).map(|r| (f, r)))
            .ok_or("not a KServe log line")?;
        let logger = r.get("name").unwrap_or_default();
        if !(logger.starts_with("kserve") || logger.starts_with("uvicorn")) {
            return Err(format!("logger `{logger}` is not KServe's"));
        }
        self.python_record(f, &r, p);
        if logger == "kserve.trace"
            && let Some(t) = r.get("message").and_then(|m| self.kserve_trace.captures(m))
        {
            p.request_id(&t["rid"]);
            let total: f64 = ["pre", "exp", "pred", "post"]
                .iter()
                .filter_map(|k| t[*k].parse::<f64>().ok())
                .sum();
            // The request's time in the model server: the sum of its stages.
            p.float("inference.latency_seconds", total * 1e-3);
            p.fields.retain(|(k, _)| *k != "event.action");
            p.str("event.action", "request");
        }
        Ok(())
    }

    /// uvicorn's default formats, as FastAPI apps run under it write them.
    fn uvicorn(&self, text: &str, p: &mut Parsed) -> Result<(), String> {
        let (f, r) = self
            .uvicorn
            .iter()
            .find_map(|f| f.read(text).map(|r| (f, r)))
            .ok_or("not a uvicorn log line")?;
        self.python_record(f, &r, p);
        Ok(())
    }

    fn gunicorn(&self, text: &str, p: &mut Parsed) -> Result<(), String> {
        if let Some(c) = self.gunicorn_access.captures(text) {
            p.time(self.iso_time.parse_text(&c["t"]).or_else(|| {
                DateTime::parse_from_str(&c["t"], "%d/%b/%Y:%H:%M:%S %z").ok().map(|d| d.to_utc())
            }));
            p.client_addr(&c["h"]);
            if &c["u"] != "-" {
                p.str("user.name", &c["u"]);
            }
            p.request_line(&c["r"]);
            p.http_status(&c["s"]);
            p.int("http.response.body.bytes", &c["b"]);
            if let Some(f) = c.name("f").filter(|f| f.as_str() != "-") {
                p.str("http.request.referrer", f.as_str());
            }
            if let Some(a) = c.name("a").filter(|a| a.as_str() != "-") {
                p.str("user_agent.original", a.as_str());
            }
            p.str("event.action", "request");
            return Ok(());
        }
        let c = self.gunicorn_error.captures(text).ok_or("not a gunicorn log line")?;
        p.time(DateTime::parse_from_str(&c["t"], "%Y-%m-%d %H:%M:%S %z").ok().map(|d| d.to_utc()));
        p.int("process.pid", &c["pid"]);
        p.level(&c["level"]);
        p.str("message", &c["msg"]);
        self.message(&c["msg"], p);
        Ok(())
    }

    /// Flask: the werkzeug development server's access line, and Flask's default app log.
    fn flask(&self, text: &str, p: &mut Parsed) -> Result<(), String> {
        if let Some(c) = self.werkzeug.captures(text) {
            p.time(self.clf_time(&c["t"]));
            p.client(&c["ip"], "");
            self.access_tail(&c["r"], &c["s"], &c["b"], p);
            return Ok(());
        }
        let r = self.flask_app.read(text).ok_or("not a Flask log line")?;
        self.python_record(&self.flask_app, &r, p);
        Ok(())
    }

    fn django(&self, text: &str, p: &mut Parsed) -> Result<(), String> {
        let c = self.django.captures(text).ok_or("not a Django runserver line")?;
        p.time(self.clf_time(&c["t"]));
        self.access_tail(&c["r"], &c["s"], &c["b"], p);
        Ok(())
    }

    /// `07/Dec/2026 04:10:00`: `BaseHTTPRequestHandler.log_date_time_string()`, local time.
    fn clf_time(&self, text: &str) -> Option<DateTime<Utc>> {
        let naive = chrono::NaiveDateTime::parse_from_str(text, "%d/%b/%Y %H:%M:%S").ok()?;
        self.iso_time.parse_text(&naive.format("%Y-%m-%dT%H:%M:%S").to_string())
    }

    fn access_tail(&self, request: &str, status: &str, bytes: &str, p: &mut Parsed) {
        p.request_line(request);
        p.http_status(status);
        p.int("http.response.body.bytes", bytes);
        p.str("event.action", "request");
    }

    /// A record read by a Python format: its attributes as ECS fields, then what its message
    /// says (an access line, labelled prediction values, a traceback).
    fn python_record(&self, f: &PythonFormat, r: &python_format::Record, p: &mut Parsed) {
        p.time(f.time(r));
        for (name, value) in &r.attrs {
            match *name {
                "asctime" | "created" | "message" => {}
                "levelprefix" => p.level(value.trim_end().trim_end_matches(':')),
                "client_addr" => p.client_addr(value),
                "request_line" => p.request_line(value),
                "status_code" => {
                    if let Some(c) = self.status_tail.captures(value) {
                        p.http_status(&c["code"]);
                    }
                    p.str("event.action", "request");
                }
                "levelname" => p.level(value),
                other => match python_format::ecs_field(other) {
                    Some((path, kind)) => {
                        if let Some(v) = python_format::typed(value, kind) {
                            p.set(path, v);
                        }
                    }
                    None => {
                        p.extra.insert(other.into(), Value::from(value.to_string()));
                    }
                },
            }
        }
        if !p.has("log.level")
            && let Some(no) = r.get("levelno").and_then(|n| n.parse::<u32>().ok())
        {
            let name = match no {
                50 => "CRITICAL",
                40 => "ERROR",
                30 => "WARNING",
                20 => "INFO",
                10 => "DEBUG",
                _ => "",
            };
            if !name.is_empty() {
                p.str("log.level", name);
            }
        }
        if let Some(msg) = r.get("message") {
            p.str("message", msg);
            if !p.has("event.action") {
                self.message(msg, p);
            }
        }
        if let Some(tb) = r.trace {
            self.traceback(tb, p);
        }
    }

    /// A free-text message: labelled prediction values, or a plain log line.
    fn message(&self, msg: &str, p: &mut Parsed) {
        let (first, traceback) = match msg.find("\nTraceback (most recent call last):") {
            Some(i) => (&msg[..i], Some(&msg[i + 1..])),
            None => (msg, None),
        };
        let found = self.labelled_values(first, p);
        if let Some(tb) = traceback {
            self.traceback(tb, p);
        } else if found {
            // A logged prediction is a request that succeeded.
            p.word_status("ok");
            p.str("event.action", "prediction");
        } else {
            p.str("event.action", "log");
        }
    }

    /// A Python traceback: the error's type and message from its last line.
    fn traceback(&self, tb: &str, p: &mut Parsed) {
        p.str("error.stack_trace", tb);
        let last = tb.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
        p.str("error.message", last);
        if let Some((ty, _)) = last.split_once(':')
            && !ty.is_empty()
            && ty.chars().all(|ch| ch.is_alphanumeric() || ch == '_' || ch == '.')
        {
            p.str("error.type", ty);
        }
        p.fields.retain(|(k, _)| {
            !matches!(*k, "event.action" | "event.outcome" | "inference.status_class")
        });
        p.str("inference.status_class", "error");
        p.str("event.outcome", "failure");
        p.str("event.action", "prediction_failed");
    }

    /// Reads `text` with one Python format (the property test drives this directly).
    pub fn parse_python(&self, f: &PythonFormat, text: &str) -> Result<Parsed, String> {
        let r = f.read(text).ok_or("the line is not of this format")?;
        let mut p = Parsed::default();
        self.python_record(f, &r, &mut p);
        Ok(p)
    }

    /// The application's own format if it declared one, else the formats Python writes
    /// without configuration.
    fn python_logging(&self, text: &str, p: &mut Parsed) -> Result<(), String> {
        let (f, r) = self
            .python_custom
            .iter()
            .chain(&self.python_presets)
            .find_map(|f| f.read(text).map(|r| (f, r)))
            .ok_or("not a Python logging line of a known format")?;
        self.python_record(f, &r, p);
        Ok(())
    }

    /// `Input Data: {...} | Prediction: class_A | Latency: 12ms`: labelled values in a message.
    /// Returns whether any was found.
    fn labelled_values(&self, msg: &str, p: &mut Parsed) -> bool {
        let mut found = false;
        let mut at = 0;
        while let Some(c) = self.python_label.captures_at(msg, at) {
            let (Some(whole), Some(label)) = (c.get(0), c.name("label")) else { break };
            let rest = &msg[whole.end()..];
            // A Python literal when it starts like one; otherwise text up to the next ` | `.
            let (value, used) = match rest.as_bytes().first() {
                Some(b'{' | b'[' | b'(' | b'\'' | b'"') => match python_literal::parse_prefix(rest)
                {
                    Ok((v, n)) => (Some(v), n),
                    Err(_) => (None, rest.find(" | ").unwrap_or(rest.len())),
                },
                _ => (None, rest.find(" | ").unwrap_or(rest.len())),
            };
            let raw = rest[..used].trim();
            at = whole.end() + used;
            found = true;
            match label.as_str().to_ascii_lowercase().as_str() {
                "input data" | "input" | "inputs" | "features" => match value {
                    Some(Value::Object(map)) => p.set("inference.features", Value::Object(map)),
                    Some(v) => p.set("inference.input", v),
                    None => p.str("inference.input", raw),
                },
                "prediction" | "predicted" | "output" => match value {
                    Some(v) => p.set("inference.prediction", v),
                    None => p.set("inference.prediction", scalar(raw)),
                },
                "latency" | "duration" | "inference time" => {
                    if let Some(l) = self.latency_text.captures(raw) {
                        let unit = l.name("u").map_or("s", |m| m.as_str());
                        p.latency(&l["v"], unit);
                    }
                }
                "model" => p.str("model.name", raw.trim_matches(['\'', '"'])),
                "version" | "model version" => {
                    p.str("model.version", raw.trim_matches(['\'', '"']))
                }
                "request id" | "request_id" => p.request_id(raw.trim_matches(['\'', '"'])),
                _ => {
                    if let Ok(f) = raw.parse::<f64>() {
                        p.float("inference.score", f);
                    }
                }
            }
            if at >= msg.len() {
                break;
            }
        }
        found
    }

    fn json(&self, text: &str, p: &mut Parsed, shape: JsonShape) -> Result<(), String> {
        let bytes = Bytes::copy_from_slice(text.as_bytes());
        let value = parse_json(&bytes).map_err(|e| format!("invalid JSON: {e}"))?;
        let Value::Object(mut map) = value else {
            return Err("the JSON is not an object".into());
        };
        if shape == JsonShape::RayServe
            && !map.contains_key("replica")
            && !map.contains_key("component_name")
        {
            return Err("not a Ray Serve JSON log: no `replica` nor `component_name`".into());
        }
        if shape == JsonShape::RayServe
            && let Some(Value::Bytes(c)) = map.remove("component_name")
        {
            let c = String::from_utf8_lossy(&c).into_owned();
            if let Some(id) = map.remove("component_id")
                && c == "controller"
            {
                p.int("process.pid", &stringify(id).to_string_lossy());
            }
            p.str("inference.component", &c);
        }
        let mut take = |keys: &[&str]| keys.iter().find_map(|k| map.remove(*k));
        if let Some(t) = take(&["timestamp", "@timestamp", "time", "ts", "asctime"]) {
            match t {
                Value::Timestamp(t) => p.time(Some(t)),
                other => p.time(other.to_str_lossy().and_then(|s| self.iso_time.parse_text(&s))),
            }
        }
        if let Some(Value::Bytes(l)) = take(&["level", "levelname", "severity"]) {
            p.level(&String::from_utf8_lossy(&l));
        }
        if let Some(Value::Bytes(l)) = take(&["logger", "logger_name", "name"]) {
            p.str("log.logger", &String::from_utf8_lossy(&l));
        }
        let model = match take(&["model", "model_name", "modelName", "deployment"]) {
            // `{"model": {"name": ..., "version": ...}}`
            Some(Value::Object(mut m)) => {
                if let Some(v) = m.remove("version") {
                    p.set("model.version", stringify(v));
                }
                m.remove("name")
            }
            other => other,
        };
        if let Some(m) = model {
            p.set("model.name", stringify(m));
        }
        if let Some(v) = take(&["model_version", "modelVersion", "version"]) {
            p.set("model.version", stringify(v));
        }
        if let Some(id) = take(&["request_id", "requestId", "request.id", "id"]) {
            p.set("http.request.id", stringify(id));
        }
        for (keys, scale) in [
            (&["latency_ms", "duration_ms", "elapsed_ms", "inference_time_ms"][..], 1e-3),
            (&["latency_us", "duration_us"][..], 1e-6),
            (&["latency_seconds", "latency_s", "duration_seconds", "latency", "duration"][..], 1.0),
        ] {
            if let Some(f) = take(keys).as_ref().and_then(as_f64) {
                p.float("inference.latency_seconds", f * scale);
            }
        }
        match take(&["status_code", "status"]) {
            Some(Value::Integer(code)) => p.http_status(&code.to_string()),
            Some(Value::Bytes(s)) => {
                let s = String::from_utf8_lossy(&s).into_owned();
                if s.parse::<u16>().is_ok() { p.http_status(&s) } else { p.word_status(&s) }
            }
            _ => {}
        }
        if let Some(Value::Bytes(m)) = take(&["method"]) {
            p.str("http.request.method", &String::from_utf8_lossy(&m));
        }
        if let Some(Value::Bytes(r)) = take(&["route", "endpoint", "path"]) {
            p.path(&String::from_utf8_lossy(&r));
        }
        for (key, path) in [
            ("prompt_tokens", "inference.tokens.prompt"),
            ("completion_tokens", "inference.tokens.completion"),
        ] {
            if let Some(v) = take(&[key]) {
                p.set(path, v);
            }
        }
        if let Some(Value::Object(mut usage)) = take(&["usage"]) {
            for (key, path) in [
                ("prompt_tokens", "inference.tokens.prompt"),
                ("completion_tokens", "inference.tokens.completion"),
            ] {
                if let Some(v) = usage.remove(key) {
                    p.set(path, v);
                }
            }
        }
        match take(&["features", "inputs", "input", "input_data"]) {
            Some(Value::Object(f)) => p.set("inference.features", Value::Object(f)),
            // A Python dict logged as a string.
            Some(Value::Bytes(s)) => match python_literal::parse(&String::from_utf8_lossy(&s)) {
                Ok(Value::Object(f)) => p.set("inference.features", Value::Object(f)),
                _ => p.set("inference.input", Value::Bytes(s)),
            },
            Some(other) => p.set("inference.input", other),
            None => {}
        }
        if let Some(v) = take(&["prediction", "pred", "predicted", "output", "predictions"]) {
            p.set("inference.prediction", v);
        }
        if let Some(v) = take(&["score", "probability", "confidence"]) {
            p.set("inference.score", v);
        }
        // Python JSON loggers: python-json-logger writes the LogRecord attributes its format
        // names, structlog's JSONRenderer the message as `event` and a traceback as
        // `exception` (format_exc_info).
        for attr in [
            "funcName",
            "lineno",
            "filename",
            "pathname",
            "module",
            "process",
            "processName",
            "thread",
            "threadName",
            "taskName",
            "levelno",
        ] {
            if let (Some((path, kind)), Some(v)) = (python_format::ecs_field(attr), take(&[attr])) {
                let text = stringify(v).to_str_lossy().map(|t| t.into_owned()).unwrap_or_default();
                if let Some(v) = python_format::typed(&text, kind) {
                    p.set(path, v);
                }
            }
        }
        let mut traceback = None;
        if let Some(e) = take(&["error", "exception", "error_message", "exc_info"]) {
            match e {
                Value::Bytes(b) if b.starts_with(b"Traceback (most recent call last):") => {
                    traceback = Some(String::from_utf8_lossy(&b).into_owned());
                }
                e => {
                    p.set("error.message", stringify(e));
                    p.str("event.outcome", "failure");
                    p.str("inference.status_class", "error");
                }
            }
        }
        let message = match take(&["message", "msg"]) {
            Some(m) => Some(m),
            None if shape == JsonShape::Prediction => {
                take(&["event"]).filter(|v| matches!(v, Value::Bytes(_)))
            }
            None => None,
        };
        if let Some(tb) = traceback {
            self.traceback(&tb, p);
        }
        if let Some(Value::Bytes(m)) = message {
            let m = String::from_utf8_lossy(&m).into_owned();
            if shape == JsonShape::RayServe {
                self.ray_message(&m, p);
            }
            p.str("message", &m);
        }
        if let Some(a) = take(&["application"]) {
            p.set("inference.application", a);
        }
        if let Some(r) = take(&["replica"]) {
            p.set("inference.replica", r);
        }
        let has_features = p.fields.iter().any(|(k, _)| *k == "inference.features");
        match shape {
            JsonShape::BentomlMonitoring if !has_features => {
                // BentoML's monitoring log is flat: every other key is a logged input.
                if map.is_empty() {
                    return Err("no feature fields in the monitoring record".into());
                }
                p.set("inference.features", Value::Object(std::mem::take(&mut map)));
            }
            _ => {
                // Keys the schema does not name are kept as they are, at the top level.
                p.extra = std::mem::take(&mut map);
            }
        }
        if !p.fields.iter().any(|(k, _)| *k == "event.action") {
            let prediction = p.fields.iter().any(|(k, _)| *k == "inference.prediction");
            if prediction && !p.fields.iter().any(|(k, _)| *k == "inference.status_class") {
                // A logged prediction is a request that succeeded.
                p.word_status("ok");
            }
            p.str("event.action", if prediction { "prediction" } else { "log" });
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum JsonShape {
    Prediction,
    BentomlMonitoring,
    RayServe,
}

/// Request ids, versions and model names are text: numbers (even beyond `i64`, which
/// `parse_json` already keeps as text) become their decimal string.
fn stringify(v: Value) -> Value {
    match v {
        Value::Integer(i) => Value::from(i.to_string()),
        Value::Float(f) => Value::from(f.to_string()),
        other => other,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Float(f) => Some(f.into_inner()),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// A bare word or number as logged: numbers become numbers, the rest text.
fn scalar(raw: &str) -> Value {
    if let Ok(i) = raw.parse::<i64>() {
        return Value::Integer(i);
    }
    match raw.parse::<f64>().ok().and_then(|f| NotNan::new(f).ok()) {
        Some(f) => Value::Float(f),
        None => Value::from(raw.trim_matches(['\'', '"']).to_string()),
    }
}

/// `k1:v1,k2:v2` pairs (either separator configurable); items without the separator skipped.
fn kv_pairs(text: &str, item: char, kv: char) -> impl Iterator<Item = (&str, &str)> {
    text.split(item).filter_map(move |pair| pair.split_once(kv)).map(|(k, v)| (k.trim(), v.trim()))
}
