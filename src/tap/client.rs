//! `weir tap`: reads `GET /tap` of a running weir and prints the events, one per line, as
//! JSON or logfmt (or one YAML document each); what weir says about the tap (outputs
//! matched, drops, reloads, the end) goes to standard error.
//!
//! As `vector tap` does, a tap that loses weir (weir stopped or restarted, the connection
//! broke) connects again, with a backoff from 100 ms doubling up to 5 s, for as long as it
//! runs, and says so on standard error; `--no-reconnect` exits instead. The first connection
//! is not retried: a wrong `--url` fails at once. `--duration-ms` ends the tap after that
//! long, reconnections included.

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use crate::sinks::util::retry::Backoff;

/// How events are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Logfmt,
    Yaml,
}

/// What `weir tap` was asked.
#[derive(Clone, Debug)]
pub struct TapArgs {
    /// The API's base URL, `http://127.0.0.1:9598`.
    pub url: String,
    pub outputs_of: Vec<String>,
    pub inputs_of: Vec<String>,
    pub format: Format,
    pub limit: u32,
    pub interval_ms: u64,
    /// Exit after printing this many events.
    pub count: Option<u64>,
    /// Print `{"output":...,"event":...}` (JSON) or an `output=` key (logfmt).
    pub meta: bool,
    /// No messages about the tap on standard error, drops and errors aside.
    pub quiet: bool,
    /// Exit after this long (exit code 0).
    pub duration: Option<Duration>,
    /// Connect again when weir goes away (stops, restarts, the connection breaks).
    pub reconnect: bool,
}

/// The waits before connecting again: 100 ms, doubled after each failed attempt up to 5 s (the
/// ceilings of the sinks' schedule, without jitter: one tap has no crowd to spread). A
/// restart of weir takes a second or two, and a tap left running against a stopped weir
/// tries no more than once per 5 s.
const RETRY: Backoff =
    Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5), max_retries: None };

impl TapArgs {
    fn endpoint(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for p in &self.outputs_of {
            query.append_pair("outputs_of", p);
        }
        for p in &self.inputs_of {
            query.append_pair("inputs_of", p);
        }
        query.append_pair("limit", &self.limit.to_string());
        query.append_pair("interval_ms", &self.interval_ms.to_string());
        format!("{}/tap?{}", self.url.trim_end_matches('/'), query.finish())
    }
}

/// Runs the tap until weir ends it, `count` events are printed, standard output closes or
/// `duration` has passed. Returns the exit code: 0, or 1 when weir cannot be reached or
/// refuses the tap (or, with `--no-reconnect`, goes away).
pub async fn run(args: TapArgs) -> i32 {
    let work = tap(&args);
    let result = match args.duration {
        // The time is up: the tap has done what it was asked.
        Some(limit) => tokio::time::timeout(limit, work).await.unwrap_or(Ok(())),
        None => work.await,
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            crate::say_err!("error: {e}");
            1
        }
    }
}

/// How one connection to weir ended.
enum Session {
    /// Nothing more to do: `count` reached, standard output closed, or weir ended the tap
    /// for good (what it named is gone).
    Done,
    /// weir went away: it is stopping (`stopping`), or the connection broke.
    Lost { why: String, stopping: bool },
}

/// Why a connection gave no tap.
enum Refusal {
    /// weir answered no (tapping off, no such component): asking again would not help.
    Final(String),
    /// weir could not be reached, or is stopping.
    Unreachable(String),
}

async fn tap(args: &TapArgs) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    let mut printer = Printer { args, printed: 0, end: None, lost: false };
    let mut connected = false;
    // Failed attempts since weir was last reached.
    let mut attempt = 0;
    // What was last said about a lost weir: an attempt failing as the last did says nothing.
    let mut said = String::new();
    loop {
        let why = match session(&client, args, &mut printer).await {
            Ok(Session::Done) => return Ok(()),
            // weir said it is stopping: without --no-reconnect the tap waits for the next
            // weir; with it, the tap ends as weir ended it (exit 0, as an ended tap does).
            Ok(Session::Lost { stopping: true, .. }) if !args.reconnect => return Ok(()),
            Ok(Session::Lost { why, .. }) => {
                connected = true;
                attempt = 0;
                said.clear();
                why
            }
            Err(Refusal::Final(e)) => return Err(e),
            Err(Refusal::Unreachable(e)) if !connected => return Err(e),
            Err(Refusal::Unreachable(e)) => e,
        };
        if !args.reconnect {
            return Err(format!("{why} (--no-reconnect)"));
        }
        let wait = RETRY.ceiling(attempt);
        if why != said {
            crate::say_err!(
                "weir tap: {why}; connecting again in {} ms (waits doubling up to {} s; \
                 --no-reconnect exits instead)",
                wait.as_millis(),
                RETRY.max.as_secs()
            );
            said = why;
        }
        printer.lost = true;
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// One connection: asks for the tap and prints what comes until it ends.
async fn session(
    client: &reqwest::Client,
    args: &TapArgs,
    printer: &mut Printer<'_>,
) -> Result<Session, Refusal> {
    let mut response = client.get(args.endpoint()).send().await.map_err(|e| {
        Refusal::Unreachable(format!(
            "cannot reach weir's API at {}: {} (is weir running, with [api] enabled at this \
             address? --url sets it)",
            args.url,
            error_chain(&e)
        ))
    })?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let error = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or(body);
        let why = format!("weir refused the tap ({status}): {}", error.trim());
        return Err(if status.is_server_error() {
            Refusal::Unreachable(why)
        } else {
            Refusal::Final(why)
        });
    }
    printer.end = None;
    if std::mem::take(&mut printer.lost) {
        crate::say_err!("weir tap: connected again to {}", args.url);
    }
    let mut pending = Vec::new();
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                let why = format!("the tap's stream broke off: {}", error_chain(&e));
                return Ok(Session::Lost { why, stopping: false });
            }
        };
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if printer.line(&line).map_err(Refusal::Final)? == Flow::Stop {
                return Ok(Session::Done);
            }
        }
    }
    Ok(match printer.end.take() {
        Some(end) if end == crate::tap::STOPPING => {
            Session::Lost { why: crate::tap::STOPPING.into(), stopping: true }
        }
        Some(_) => Session::Done,
        None => Session::Lost { why: "weir closed the tap's connection".into(), stopping: false },
    })
}

/// The root cause of an error (reqwest's own message names the URL again and says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(s) = cause.source() {
        cause = s;
    }
    cause.to_string()
}

#[derive(PartialEq, Eq)]
enum Flow {
    Go,
    Stop,
}

struct Printer<'a> {
    args: &'a TapArgs,
    printed: u64,
    /// Why weir ended the tap, once its last notice came.
    end: Option<String>,
    /// weir was lost: the next tap accepted says it is back.
    lost: bool,
}

impl Printer<'_> {
    fn line(&mut self, line: &[u8]) -> Result<Flow, String> {
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            return Err(format!(
                "weir sent a line that is not JSON: {}",
                String::from_utf8_lossy(line)
            ));
        };
        if let Some(event) = v.get("event") {
            let output = v["output"].as_str().unwrap_or_default();
            let text = match (self.args.format, self.args.meta) {
                (Format::Json, true) => v.to_string(),
                (Format::Json, false) => event.to_string(),
                (Format::Logfmt, meta) => logfmt(event, meta.then_some(output)),
                (Format::Yaml, true) => yaml(&v),
                (Format::Yaml, false) => yaml(event),
            };
            let mut out = std::io::stdout().lock();
            // A closed standard output (`weir tap | head`) ends the tap quietly.
            if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
                return Ok(Flow::Stop);
            }
            self.printed += 1;
            if self.args.count.is_some_and(|c| self.printed >= c) {
                return Ok(Flow::Stop);
            }
        } else if let Some(n) = v.get("dropped") {
            crate::say_err!(
                "weir tap: {n} events dropped so far: this tap reads slower than they come \
                 (weir does not wait for it; raise --interval-ms or lower --limit)"
            );
        } else if let Some(notice) = v.get("notice").and_then(Value::as_str) {
            if !self.args.quiet {
                crate::say_err!("weir tap: {notice}");
            }
        } else if let Some(end) = v.get("end").and_then(Value::as_str) {
            self.end = Some(end.to_string());
            crate::say_err!("weir tap: the tap ended: {end}");
        } else if let Some(outputs) = v.get("tapping").and_then(Value::as_array)
            && !self.args.quiet
        {
            let names: Vec<&str> = outputs.iter().filter_map(Value::as_str).collect();
            crate::say_err!("weir tap: tapping the outputs of {}", names.join(", "));
        }
        Ok(Flow::Go)
    }
}

/// One event as a YAML document, `---` first so that the events read as a stream of
/// documents (`yaml.safe_load_all`): objects and arrays in block style, scalars written as
/// JSON writes them, which YAML reads alike (a JSON string is a double-quoted YAML string).
/// Written here rather than adding a YAML crate for one output format: JSON's scalars are
/// all it needs.
pub fn yaml(event: &Value) -> String {
    let mut out = String::from("---");
    match event {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            yaml_block(event, 0, &mut out);
            out.pop(); // the last line feed: `writeln!` adds it
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            yaml_block(event, 0, &mut out);
            out.pop();
        }
        scalar => {
            out.push(' ');
            out.push_str(&yaml_scalar(scalar));
        }
    }
    out
}

/// A non-empty object or array, its lines indented by `indent` spaces.
fn yaml_block(value: &Value, indent: usize, out: &mut String) {
    let nested = |v: &Value| match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    };
    let entry = |head: String, v: &Value, out: &mut String| {
        out.push_str(&" ".repeat(indent));
        out.push_str(&head);
        if nested(v) {
            out.push('\n');
            yaml_block(v, indent + 2, out);
        } else {
            out.push(' ');
            out.push_str(&yaml_scalar(v));
            out.push('\n');
        }
    };
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                entry(format!("{}:", yaml_key(k)), v, out);
            }
        }
        Value::Array(items) => {
            for v in items {
                entry("-".to_string(), v, out);
            }
        }
        _ => {}
    }
}

/// A key plain when YAML reads it as that string (`model.name`), else double-quoted
/// (`"@timestamp"`: `@` cannot start a plain scalar; `"true"`, `"1"`, and YAML 1.1's `"n"`
/// would not be strings).
fn yaml_key(key: &str) -> String {
    let mut chars = key.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && !matches!(
            key.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain { key.to_string() } else { Value::String(key.to_string()).to_string() }
}

fn yaml_scalar(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".to_string(),
        Value::Array(_) => "[]".to_string(),
        other => other.to_string(),
    }
}

/// One event as a logfmt line: nested objects flattened to dotted keys, arrays and other
/// values as their JSON text, values quoted when they hold spaces, `=` or quotes. Written
/// here because no logfmt crate both flattens nested fields and is kept up.
pub fn logfmt(event: &Value, output: Option<&str>) -> String {
    let mut pairs = Vec::new();
    if let Some(o) = output {
        pairs.push(("output".to_string(), o.to_string()));
    }
    flatten("", event, &mut pairs);
    let parts: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", quote(v))).collect();
    parts.join(" ")
}

fn flatten(prefix: &str, value: &Value, pairs: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, pairs);
            }
        }
        Value::String(s) => pairs.push((prefix.to_string(), s.clone())),
        Value::Null => pairs.push((prefix.to_string(), String::new())),
        other => pairs.push((prefix.to_string(), other.to_string())),
    }
}

fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && !value.chars().any(|c| c.is_whitespace() || c.is_control() || c == '=' || c == '"');
    if plain {
        return value.to_string();
    }
    // A JSON string literal: quotes, backslashes and control characters escaped.
    Value::String(value.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_as_logfmt() {
        let event = serde_json::json!({
            "empty": "",
            "log": {"level": "info"},
            "message": "GET /predict 200",
            "n": 3,
            "q": "say \"hi\"",
            "tags": ["a", "b"],
        });
        assert_eq!(
            logfmt(&event, Some("parse")),
            "output=parse empty=\"\" log.level=info message=\"GET /predict 200\" n=3 \
             q=\"say \\\"hi\\\"\" tags=\"[\\\"a\\\",\\\"b\\\"]\""
        );
    }

    #[test]
    fn events_as_yaml_documents() {
        let event = serde_json::json!({
            "@timestamp": "2026-12-08T01:00:00Z",
            "empty": {},
            "log": {"level": "info"},
            "message": "GET /predict: 200 \"ok\"",
            "n": 3,
            "null": null,
            "tags": ["a", {"k": 1.5}, []],
        });
        let expected = "---\n\
             \"@timestamp\": \"2026-12-08T01:00:00Z\"\n\
             empty: {}\n\
             log:\n  level: \"info\"\n\
             message: \"GET /predict: 200 \\\"ok\\\"\"\n\
             \"n\": 3\n\
             \"null\": null\n\
             tags:\n  - \"a\"\n  -\n    k: 1.5\n  - []";
        assert_eq!(yaml(&event), expected);
        assert_eq!(yaml(&serde_json::json!("x")), "--- \"x\"");
    }

    #[test]
    fn the_request_names_every_pattern() {
        let args = TapArgs {
            url: "http://127.0.0.1:9598/".into(),
            outputs_of: vec!["parse".into(), "in*".into()],
            inputs_of: vec!["es".into()],
            format: Format::Json,
            limit: 7,
            interval_ms: 250,
            count: None,
            meta: false,
            quiet: false,
            duration: None,
            reconnect: true,
        };
        assert_eq!(
            args.endpoint(),
            "http://127.0.0.1:9598/tap?outputs_of=parse&outputs_of=in*&inputs_of=es&limit=7&interval_ms=250"
        );
    }
}
