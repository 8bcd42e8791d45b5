//! Request bodies to events: JSON (one value, an array of them, or a stream of values such as
//! NDJSON), plain lines, and HTML forms (`application/x-www-form-urlencoded`, which is what
//! Python's `logging.handlers.HTTPHandler` sends: one field per `LogRecord` attribute).
//!
//! Pure functions of the body and the request's facts, so the fuzz target and the tests call
//! exactly what the server does. A body that does not decode is refused whole, with the
//! reason (nothing of it is sent on), so the client can fix it and send it again.

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use vrl::value::{KeyString, ObjectMap, Value};

use crate::transforms::model_logs::python_format::{Kind, ecs_field, typed};
use crate::transforms::model_logs::python_literal;

/// `decoding.codec`: how a body is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Codec {
    /// By `Content-Type`: JSON types as `json`, forms as `form` (`curl -d` labels everything
    /// a form: one that begins with `{` or `[` is JSON, one without `=` text), anything else
    /// as `text`
    /// (sniffed as JSON when there is no `Content-Type` and the body begins with `{` or `[`).
    #[default]
    Auto,
    /// JSON values one after another (one document, NDJSON, concatenated); an array gives one
    /// event per element.
    Json,
    /// Each line one event, its text in `message`.
    Text,
    /// `application/x-www-form-urlencoded`, read as a Python `LogRecord`.
    Form,
}

impl Codec {
    /// The codec `Auto` resolves to for this body.
    pub fn resolve(self, content_type: Option<&str>, body: &[u8]) -> Codec {
        if self != Codec::Auto {
            return self;
        }
        let looks_json = matches!(body.trim_ascii_start().first(), Some(b'{' | b'['));
        let Some(ct) = content_type else {
            return if looks_json { Codec::Json } else { Codec::Text };
        };
        let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match mime.as_str() {
            "application/x-www-form-urlencoded" if looks_json => Codec::Json,
            "application/x-www-form-urlencoded" if !body.contains(&b'=') => Codec::Text,
            "application/x-www-form-urlencoded" => Codec::Form,
            "application/json"
            | "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
            | "application/json-seq" => Codec::Json,
            m if m.ends_with("+json") => Codec::Json,
            _ => Codec::Text,
        }
    }
}

/// The facts of a request that events carry.
#[derive(Debug, Default)]
pub struct RequestFacts {
    /// `source.ip`.
    pub peer_ip: Option<String>,
    /// Chosen headers: (lower-case name, value) -> `http.request.header.<name>`.
    pub headers: Vec<(String, String)>,
    /// Chosen query parameters -> `http.request.query.<name>`.
    pub query: Vec<(String, String)>,
}

/// The events of one body, each an object with `@timestamp` (`now` unless the body gave
/// one) and the request's facts where the body left those fields free.
pub fn decode(
    codec: Codec,
    content_type: Option<&str>,
    body: &[u8],
    facts: &RequestFacts,
    now: DateTime<Utc>,
) -> Result<Vec<Value>, String> {
    let mut events = match codec.resolve(content_type, body) {
        Codec::Json => json(body)?,
        Codec::Form => vec![log_record(body)],
        // `resolve` never answers `Auto`.
        Codec::Text | Codec::Auto => text(body),
    };
    for event in &mut events {
        let Value::Object(map) = event else { continue };
        if !map.contains_key("@timestamp") {
            map.insert(KeyString::from("@timestamp"), Value::Timestamp(now));
        }
        if let Some(ip) = &facts.peer_ip {
            set_absent(map, &["source", "ip"], Value::from(ip.as_str()));
        }
        for (name, value) in &facts.headers {
            set_absent(map, &["http", "request", "header", name], Value::from(value.as_str()));
        }
        for (name, value) in &facts.query {
            set_absent(map, &["http", "request", "query", name], Value::from(value.as_str()));
        }
    }
    Ok(events)
}

/// Sets `path` in `map` unless something is there already (the body's own fields win).
fn set_absent(map: &mut ObjectMap, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut node = map;
    for key in parents {
        let entry =
            node.entry(KeyString::from(*key)).or_insert_with(|| Value::Object(ObjectMap::new()));
        let Value::Object(next) = entry else { return };
        node = next;
    }
    node.entry(KeyString::from(*last)).or_insert(value);
}

/// An object as it is; any other value as `message`.
fn as_event(value: Value) -> Value {
    match value {
        Value::Object(_) => value,
        other => {
            let mut map = ObjectMap::new();
            map.insert(KeyString::from("message"), other);
            Value::Object(map)
        }
    }
}

/// JSON values one after another; the elements of a top-level array are events each.
fn json(body: &[u8]) -> Result<Vec<Value>, String> {
    let mut events = Vec::new();
    let stream = serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>();
    for (i, item) in stream.enumerate() {
        let value = item.map_err(|e| format!("invalid JSON (value {}): {e}", i + 1))?;
        match value {
            serde_json::Value::Array(items) => {
                events.extend(items.into_iter().map(|v| as_event(Value::from(v))));
            }
            other => events.push(as_event(Value::from(other))),
        }
    }
    Ok(events)
}

/// One event per non-empty line (`\r\n` or `\n`), invalid UTF-8 replaced.
fn text(body: &[u8]) -> Vec<Value> {
    body.split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty())
        .map(|line| as_event(Value::Bytes(Bytes::from(String::from_utf8_lossy(line).into_owned()))))
        .collect()
}

/// A Python `LogRecord` sent as a form (`HTTPHandler.mapLogRecord`, its `__dict__`): the
/// standard attributes to ECS as the `parse_model_log` transform maps them, `created` to
/// `@timestamp`, the message formatted from `msg % args` as `logging` would (or `msg` as it
/// is, `args` kept, when the arguments are not plain literals), a traceback (`exc_text`,
/// `stack_info`) to `error.stack_trace`; other fields (`extra=`) kept under their names.
fn log_record(body: &[u8]) -> Value {
    let mut map = ObjectMap::new();
    let mut msg = None;
    let mut args = None;
    let mut message = None;
    for (key, value) in form_urlencoded::parse(body) {
        let (key, value) = (key.into_owned(), value.into_owned());
        match key.as_str() {
            "msg" => msg = Some(value),
            "args" => args = Some(value),
            "message" => message = Some(value),
            "created" => match value.trim().parse::<f64>().ok().and_then(epoch) {
                Some(t) => set(&mut map, "@timestamp", Value::Timestamp(t)),
                None => set(&mut map, "python.created", Value::from(value)),
            },
            "exc_text" | "stack_info" => {
                if value != "None" && !value.is_empty() {
                    set_absent_path(&mut map, "error.stack_trace", Value::from(value));
                }
            }
            "exc_info" => {
                if let Some((kind, text)) = exception(&value) {
                    set(&mut map, "error.type", Value::from(kind));
                    set(&mut map, "error.message", Value::from(text));
                }
            }
            "asctime" => set(&mut map, "python.asctime", Value::from(value)),
            _ => match ecs_field(&key) {
                Some((field, kind)) => {
                    let value = if value == "None" && kind != Kind::Text {
                        None
                    } else {
                        typed(&value, kind)
                    };
                    if let Some(v) = value {
                        set(&mut map, field, v);
                    }
                }
                None => set(&mut map, &key, Value::from(value)),
            },
        }
    }
    let text = match (message, msg) {
        // A formatter already ran on the record (another handler): its text is the message.
        (Some(m), _) => m,
        (None, Some(m)) => match args.as_deref().map(str::trim) {
            None | Some("None" | "()" | "") => m,
            Some(a) => match percent_format(&m, a) {
                Some(formatted) => formatted,
                None => {
                    set(&mut map, "python.args", Value::from(a.to_owned()));
                    m
                }
            },
        },
        // A form that is not a record: its fields as they are.
        (None, None) => return Value::Object(map),
    };
    set(&mut map, "message", Value::from(text));
    Value::Object(map)
}

/// The type and message of an exception from the `repr` of `exc_info`, which is all of it a
/// record carries unless a formatter ran first (then `exc_text` has the traceback):
/// `(<class 'ValueError'>, ValueError('bad input'), <traceback object at 0x7f...>)`.
fn exception(repr: &str) -> Option<(String, String)> {
    let rest = repr.strip_prefix("(<class '")?;
    let (kind, rest) = rest.split_once("'>, ")?;
    let (instance, _) = rest.rsplit_once(", <traceback object at ")?;
    let short = kind.rsplit('.').next().unwrap_or(kind);
    let args = instance.strip_prefix(short)?.strip_prefix('(')?.strip_suffix(')')?;
    let text = match python_literal::parse(args) {
        Ok(Value::Bytes(b)) => String::from_utf8_lossy(&b).into_owned(),
        _ => args.to_string(),
    };
    Some((kind.to_string(), text))
}

/// Sets a dotted path, replacing what is there (a record's attributes are all distinct).
fn set(map: &mut ObjectMap, path: &str, value: Value) {
    let parts: Vec<&str> = path.split('.').collect();
    let Some((last, parents)) = parts.split_last() else { return };
    let mut node = map;
    for key in parents {
        let entry =
            node.entry(KeyString::from(*key)).or_insert_with(|| Value::Object(ObjectMap::new()));
        if !matches!(entry, Value::Object(_)) {
            *entry = Value::Object(ObjectMap::new());
        }
        let Value::Object(next) = entry else { return };
        node = next;
    }
    node.insert(KeyString::from(*last), value);
}

fn set_absent_path(map: &mut ObjectMap, path: &str, value: Value) {
    let parts: Vec<&str> = path.split('.').collect();
    set_absent(map, &parts, value);
}

/// Seconds since the epoch (Python's `created`) as a time, to the microsecond.
fn epoch(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() || secs.abs() > 1e13 {
        return None;
    }
    let micros = (secs * 1e6).round() as i64;
    Utc.timestamp_micros(micros).single()
}

/// `msg % args` for the conversions `logging` users write (`%s`, `%r`, `%d`, `%i`, `%f`
/// with flags, width and precision, `%%`) when `args` is a tuple (or one value) of plain
/// literals; `None` when Python would do something this does not (a mapping, `%x`, a
/// mismatch in count), so the caller keeps the template and the arguments apart.
pub fn percent_format(template: &str, args: &str) -> Option<String> {
    let values = match python_literal::parse(args).ok()? {
        Value::Array(items) => items,
        Value::Object(_) => return None,
        one => vec![one],
    };
    let mut values = values.into_iter();
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let spec = &rest[at + 1..];
        let len = spec.find(|c: char| c.is_ascii_alphabetic() || c == '%')?;
        let (flags, conv) = (&spec[..len], spec[len..].chars().next()?);
        if !flags.bytes().all(|b| b"-+ #0.".contains(&b) || b.is_ascii_digit()) {
            return None;
        }
        rest = &spec[len + conv.len_utf8()..];
        if conv == '%' {
            out.push('%');
            continue;
        }
        let value = values.next()?;
        let text = match conv {
            's' => str_of(&value),
            'r' => repr_of(&value),
            'd' | 'i' => int_of(&value)?.to_string(),
            'f' | 'F' => {
                let precision = flags.split_once('.').map_or(Some(6), |(_, p)| p.parse().ok())?;
                // Rust's formatter panics above u16::MAX digits; a width this large is garbage.
                if precision > MAX_PAD {
                    return None;
                }
                format!("{:.*}", precision, float_of(&value)?)
            }
            _ => return None,
        };
        pad(&mut out, &text, flags);
    }
    if values.next().is_some() {
        return None;
    }
    out.push_str(rest);
    Some(out)
}

/// The widest padding or precision a `%` conversion gets: a bound on what one record can grow to.
const MAX_PAD: usize = 1024;

/// Applies a `%` conversion's width (`-` aligns left).
fn pad(out: &mut String, text: &str, flags: &str) {
    let width: usize = flags
        .trim_start_matches(['-', '+', ' ', '#', '0'])
        .split('.')
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or(0);
    let fill = width.saturating_sub(text.chars().count()).min(MAX_PAD);
    if flags.starts_with('-') {
        out.push_str(text);
        out.extend(std::iter::repeat_n(' ', fill));
    } else {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(text);
    }
}

fn str_of(v: &Value) -> String {
    match v {
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Null => "None".into(),
        Value::Boolean(true) => "True".into(),
        Value::Boolean(false) => "False".into(),
        Value::Float(f) => python_float(f.into_inner()),
        other => repr_of(other),
    }
}

fn repr_of(v: &Value) -> String {
    match v {
        Value::Bytes(b) => format!("'{}'", String::from_utf8_lossy(b).replace('\'', "\\'")),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => python_float(f.into_inner()),
        Value::Null | Value::Boolean(_) => str_of(v),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(repr_of).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(map) => {
            let parts: Vec<String> =
                map.iter().map(|(k, v)| format!("'{k}': {}", repr_of(v))).collect();
            format!("{{{}}}", parts.join(", "))
        }
        other => other.to_string(),
    }
}

/// A float as Python's `str` writes it (`1.0`, `0.25`).
fn python_float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        f.to_string()
    }
}

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::Float(f) if f.is_finite() && f.abs() < 9e18 => Some(f.into_inner().trunc() as i64),
        Value::Boolean(b) => Some(i64::from(*b)),
        _ => None,
    }
}

fn float_of(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Float(f) => Some(f.into_inner()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap()
    }

    fn run(codec: Codec, ct: Option<&str>, body: &str) -> Result<Vec<Value>, String> {
        decode(codec, ct, body.as_bytes(), &RequestFacts::default(), now())
    }

    fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
        path.split('.').try_fold(v, |v, k| v.as_object()?.get(k))
    }

    #[test]
    fn json_documents_arrays_and_ndjson() {
        let ct = Some("application/json");
        let one = run(Codec::Auto, ct, r#"{"message":"a","n":1}"#).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(get(&one[0], "n"), Some(&Value::Integer(1)));
        assert_eq!(get(&one[0], "@timestamp"), Some(&Value::Timestamp(now())));
        let array = run(Codec::Auto, ct, r#"[{"message":"a"},{"message":"b"},"c"]"#).unwrap();
        assert_eq!(array.len(), 3);
        assert_eq!(get(&array[2], "message"), Some(&Value::from("c")));
        let nd =
            run(Codec::Auto, Some("application/x-ndjson"), "{\"a\":1}\n{\"a\":2}\n\n").unwrap();
        assert_eq!(nd.len(), 2);
        let own_time = run(Codec::Json, None, r#"{"@timestamp":"2020-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(get(&own_time[0], "@timestamp"), Some(&Value::from("2020-01-01T00:00:00Z")));
        let err = run(Codec::Auto, ct, "{\"a\":1}\n{\"a\":").unwrap_err();
        assert!(err.starts_with("invalid JSON (value 2)"), "{err}");
    }

    #[test]
    fn auto_reads_by_content_type_and_curl_style_forms_of_json() {
        let form = "application/x-www-form-urlencoded";
        assert_eq!(Codec::Auto.resolve(Some(form), b" {\"a\":1}"), Codec::Json);
        assert_eq!(Codec::Auto.resolve(Some(form), b"name=x&msg=y"), Codec::Form);
        assert_eq!(Codec::Auto.resolve(Some(form), b"just words"), Codec::Text);
        assert_eq!(Codec::Auto.resolve(None, b"[1]"), Codec::Json);
        assert_eq!(Codec::Auto.resolve(None, b"plain"), Codec::Text);
        assert_eq!(Codec::Auto.resolve(Some("text/plain"), b"{not json"), Codec::Text);
        assert_eq!(
            Codec::Auto.resolve(Some("application/vnd.x+json; charset=utf-8"), b""),
            Codec::Json
        );
        assert_eq!(Codec::Text.resolve(Some("application/json"), b"{}"), Codec::Text);
    }

    #[test]
    fn text_is_one_event_per_line() {
        let body = b"first\r\n\nsecond \xff\nthird";
        let events = decode(Codec::Text, None, body, &RequestFacts::default(), now()).unwrap();
        let messages: Vec<_> = events.iter().map(|e| get(e, "message").unwrap().clone()).collect();
        assert_eq!(
            messages,
            vec![Value::from("first"), Value::from("second \u{fffd}"), Value::from("third")]
        );
    }

    #[test]
    fn request_facts_fill_what_the_body_left_free() {
        let facts = RequestFacts {
            peer_ip: Some("10.0.0.7".into()),
            headers: vec![("x-request-id".into(), "r1".into())],
            query: vec![("env".into(), "prod".into())],
        };
        let body = br#"{"message":"m","source":{"ip":"1.2.3.4"}}"#;
        let events = decode(Codec::Json, None, body, &facts, now()).unwrap();
        assert_eq!(get(&events[0], "source.ip"), Some(&Value::from("1.2.3.4")));
        assert_eq!(get(&events[0], "http.request.header.x-request-id"), Some(&Value::from("r1")));
        assert_eq!(get(&events[0], "http.request.query.env"), Some(&Value::from("prod")));
    }

    #[test]
    fn a_python_log_record_maps_to_ecs() {
        // What `HTTPHandler` sends for `log.warning("loaded %s in %.1f ms (%d%%)", "m", 12.34, 5)`.
        let body = "name=app.model&msg=loaded+%25s+in+%25.1f+ms+%28%25d%25%25%29\
            &args=%28%27m%27%2C+12.34%2C+5%29&levelname=WARNING&levelno=30\
            &pathname=%2Fsrv%2Fapp.py&filename=app.py&module=app&exc_info=None&exc_text=None\
            &stack_info=None&lineno=42&funcName=load&created=1765108800.25&msecs=250.0\
            &relativeCreated=12.5&thread=140&threadName=MainThread&processName=MainProcess\
            &process=77&taskName=None&request_id=abc";
        let events = run(Codec::Auto, Some("application/x-www-form-urlencoded"), body).unwrap();
        let e = &events[0];
        assert_eq!(get(e, "message"), Some(&Value::from("loaded m in 12.3 ms (5%)")));
        assert_eq!(get(e, "log.level"), Some(&Value::from("WARNING")));
        assert_eq!(get(e, "log.logger"), Some(&Value::from("app.model")));
        assert_eq!(get(e, "log.origin.file.line"), Some(&Value::Integer(42)));
        assert_eq!(get(e, "log.origin.function"), Some(&Value::from("load")));
        assert_eq!(get(e, "process.pid"), Some(&Value::Integer(77)));
        assert_eq!(get(e, "request_id"), Some(&Value::from("abc")));
        assert!(get(e, "error").is_none());
        let t = Utc.timestamp_micros(1_765_108_800_250_000).unwrap();
        assert_eq!(get(e, "@timestamp"), Some(&Value::Timestamp(t)));
    }

    #[test]
    fn an_exception_is_read_from_the_repr_of_exc_info() {
        let repr = "(<class 'json.decoder.JSONDecodeError'>, JSONDecodeError('Expecting value: \\'x\\''), <traceback object at 0x7f3a>)";
        let (kind, text) = exception(repr).unwrap();
        assert_eq!(
            (kind.as_str(), text.as_str()),
            ("json.decoder.JSONDecodeError", "Expecting value: 'x'")
        );
        assert_eq!(exception("None"), None);
        let (_, odd) = exception("(<class 'E'>, E(1, 2), <traceback object at 0x1>)").unwrap();
        assert_eq!(odd, "1, 2");
    }

    #[test]
    fn percent_format_follows_python_or_declines() {
        assert_eq!(percent_format("%s=%r", "('a', 'b')").as_deref(), Some("a='b'"));
        assert_eq!(percent_format("[%5s|%-4d]", "('ab', 7)").as_deref(), Some("[   ab|7   ]"));
        assert_eq!(percent_format("%s", "1.0").as_deref(), Some("1.0"));
        assert_eq!(percent_format("%s %s", "(None, True)").as_deref(), Some("None True"));
        assert_eq!(percent_format("%s", "('a', 'b')"), None);
        assert_eq!(percent_format("%s %s", "('a',)"), None);
        assert_eq!(percent_format("%x", "(1,)"), None);
        assert_eq!(percent_format("%(k)s", "{'k': 1}"), None);
        assert_eq!(percent_format("%s", "(<object at 0x1>,)"), None);
        assert_eq!(percent_format("%.2f", "(1.005,)").as_deref(), Some("1.00"));
        // Found by fuzzing: a precision beyond what Rust's formatter takes panicked.
        assert_eq!(percent_format("%.84171834f", "(1.5,)"), None);
    }
}
