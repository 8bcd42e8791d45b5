//! OTLP log records to events: the OpenTelemetry log data model mapped to ECS.
//!
//! Each `LogRecord` becomes one event:
//!
//! | OTLP | event field |
//! | --- | --- |
//! | `body` | `message` (a string; a map stays an object, a list an array, bytes base64) |
//! | `time_unix_nano` | `@timestamp` (else `observed_time_unix_nano`, else when weir read it) |
//! | `observed_time_unix_nano` | `event.created` |
//! | `severity_text` | `log.level` (else the short name of `severity_number`: `INFO`, `WARN2`...) |
//! | `severity_number` | `event.severity` |
//! | `trace_id`, `span_id` | `trace.id`, `span.id` (lowercase hex; absent when invalid) |
//! | `flags` | `otel.trace_flags` (the W3C trace flags; absent when 0) |
//! | `event_name` | `event.action` |
//! | scope `name`, `version` | `log.logger`, `otel.scope.version` |
//! | resource and record attributes with an ECS field | that field ([`ecs_path`]) |
//! | other resource attributes | `otel.resource.<key>` (the key kept whole, dots and all) |
//! | other record attributes | `otel.attributes.<key>` |
//!
//! A record attribute wins over a resource attribute mapped to the same field. A mapped
//! attribute whose field is taken by a value of another shape (`kubernetes.pod` a string, say)
//! is kept under its prefix instead, so nothing is lost.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use vrl::value::{KeyString, ObjectMap, Value};

use crate::event::Event;

/// The events of one export request (in order) and how many records it held.
pub fn events(request: ExportLogsServiceRequest, now: DateTime<Utc>) -> Vec<Event> {
    let mut out = Vec::new();
    for resource_logs in request.resource_logs {
        let mut resource = ObjectMap::new();
        if let Some(r) = resource_logs.resource {
            add_attributes(&mut resource, r.attributes, "resource");
        }
        for scope_logs in resource_logs.scope_logs {
            let mut scoped = resource.clone();
            if let Some(scope) = scope_logs.scope {
                if !scope.name.is_empty() {
                    set(&mut scoped, &["log", "logger"], Value::from(scope.name));
                }
                if !scope.version.is_empty() {
                    set(&mut scoped, &["otel", "scope", "version"], Value::from(scope.version));
                }
            }
            out.extend(scope_logs.log_records.into_iter().map(|r| event(&scoped, r, now)));
        }
    }
    out
}

/// One record's event, on top of its resource's and scope's fields.
fn event(base: &ObjectMap, record: LogRecord, now: DateTime<Utc>) -> Event {
    let mut map = base.clone();
    add_attributes(&mut map, record.attributes, "attributes");
    let observed = time(record.observed_time_unix_nano);
    let at = time(record.time_unix_nano).or(observed).unwrap_or(now);
    set(&mut map, &["@timestamp"], Value::Timestamp(at));
    if let Some(observed) = observed {
        set(&mut map, &["event", "created"], Value::Timestamp(observed));
    }
    let level = if record.severity_text.is_empty() {
        severity_name(record.severity_number).map(str::to_owned)
    } else {
        Some(record.severity_text)
    };
    if let Some(level) = level {
        set(&mut map, &["log", "level"], Value::from(level));
    }
    if record.severity_number > 0 {
        set(&mut map, &["event", "severity"], Value::Integer(record.severity_number.into()));
    }
    if let Some(id) = hex_id(&record.trace_id, 16) {
        set(&mut map, &["trace", "id"], Value::from(id));
    }
    if let Some(id) = hex_id(&record.span_id, 8) {
        set(&mut map, &["span", "id"], Value::from(id));
    }
    if record.flags & 0xff != 0 {
        set(&mut map, &["otel", "trace_flags"], Value::Integer(i64::from(record.flags & 0xff)));
    }
    if !record.event_name.is_empty() {
        set(&mut map, &["event", "action"], Value::from(record.event_name));
    }
    let message = record.body.map(any_value).unwrap_or(Value::Null);
    if message != Value::Null {
        map.insert(KeyString::from("message"), message);
    }
    Event::from_value(Value::Object(map))
}

/// Adds attributes at their ECS field, or under `otel.<prefix>.<key>`.
fn add_attributes(map: &mut ObjectMap, attributes: Vec<KeyValue>, prefix: &str) {
    for KeyValue { key, value } in attributes {
        let value = value.map(any_value).unwrap_or(Value::Null);
        let placed = match ecs_path(&key) {
            Some(path) => try_set(map, &path, value),
            None => Err(value),
        };
        if let Err(value) = placed {
            set(map, &["otel", prefix, &key], value);
        }
    }
}

/// Record and resource attribute keys that name the same thing in ECS, with their field.
/// Where the OpenTelemetry semantic conventions and ECS agree on a name (`service.name`,
/// `host.name`, `http.request.method`...), the key is its own field.
const RENAMED: &[(&str, &str)] = &[
    ("service.instance.id", "service.node.name"),
    ("deployment.environment", "service.environment"),
    ("deployment.environment.name", "service.environment"),
    ("host.arch", "host.architecture"),
    ("os.type", "host.os.platform"),
    ("os.name", "host.os.name"),
    ("os.version", "host.os.version"),
    ("os.description", "host.os.full"),
    ("process.executable.name", "process.name"),
    ("process.executable.path", "process.executable"),
    ("process.parent_pid", "process.parent.pid"),
    ("container.image.tag", "container.image.tag"),
    ("container.image.tags", "container.image.tag"),
    ("cloud.platform", "cloud.service.name"),
    ("exception.type", "error.type"),
    ("exception.message", "error.message"),
    ("exception.stacktrace", "error.stack_trace"),
    ("code.filepath", "log.origin.file.name"),
    ("code.file.path", "log.origin.file.name"),
    ("code.lineno", "log.origin.file.line"),
    ("code.line.number", "log.origin.file.line"),
    ("code.function", "log.origin.function"),
    ("code.function.name", "log.origin.function"),
    ("thread.id", "process.thread.id"),
    ("thread.name", "process.thread.name"),
    ("k8s.namespace.name", "kubernetes.namespace"),
];

/// Keys that are ECS fields as they are.
const SAME: &[&str] = &[
    "service.name",
    "service.version",
    "service.namespace",
    "host.name",
    "host.id",
    "host.type",
    "host.ip",
    "host.mac",
    "host.hostname",
    "process.pid",
    "process.command_line",
    "process.title",
    "container.id",
    "container.name",
    "container.runtime",
    "container.image.name",
    "cloud.provider",
    "cloud.region",
    "cloud.availability_zone",
    "cloud.account.id",
    "http.request.method",
    "http.request.body.size",
    "http.response.status_code",
    "http.response.body.size",
    "url.full",
    "url.path",
    "url.query",
    "url.scheme",
    "url.domain",
    "user_agent.original",
    "client.address",
    "client.port",
    "server.address",
    "server.port",
    "source.address",
    "source.port",
    "destination.address",
    "destination.port",
    "user.id",
    "user.name",
    "user.email",
    "error.type",
    "error.message",
    "event.dataset",
    "event.category",
    "event.outcome",
];

/// The ECS field of an attribute key, as path segments, or `None` to keep it under `otel`.
/// `k8s.*` becomes `kubernetes.*` as Filebeat names it: `k8s.namespace.name` is
/// `kubernetes.namespace`, pod labels and annotations are `kubernetes.labels.<key>` and
/// `kubernetes.annotations.<key>` (the label key kept whole), the rest keeps its segments.
pub fn ecs_path(key: &str) -> Option<Vec<&str>> {
    let split = |s| str::split(s, '.').collect::<Vec<_>>();
    if let Some((_, to)) = RENAMED.iter().find(|(from, _)| *from == key) {
        return Some(split(to));
    }
    if SAME.contains(&key) {
        return Some(split(key));
    }
    let rest = key.strip_prefix("k8s.")?;
    for (from, to) in [("pod.label.", "labels"), ("pod.annotation.", "annotations")] {
        if let Some(name) = rest.strip_prefix(from) {
            return (!name.is_empty()).then(|| vec!["kubernetes", to, name]);
        }
    }
    let mut path = vec!["kubernetes"];
    path.extend(rest.split('.'));
    path.iter().all(|s| !s.is_empty()).then_some(path)
}

/// Sets `value` at `path`, creating objects on the way; gives the value back when a segment
/// on the way holds something other than an object.
fn try_set(map: &mut ObjectMap, path: &[&str], value: Value) -> Result<(), Value> {
    let Some((last, parents)) = path.split_last() else { return Err(value) };
    let mut node = map;
    for segment in parents {
        let entry = node
            .entry(KeyString::from(*segment))
            .or_insert_with(|| Value::Object(ObjectMap::new()));
        match entry {
            Value::Object(inner) => node = inner,
            _ => return Err(value),
        }
    }
    if matches!(node.get(*last), Some(Value::Object(_))) && !matches!(value, Value::Object(_)) {
        // `kubernetes.pod` given as a string while `kubernetes.pod.name` is there: keep both.
        return Err(value);
    }
    node.insert(KeyString::from(*last), value);
    Ok(())
}

/// Sets a field weir owns (`otel.*`, `log.level`...); a clash with an attribute of another
/// shape is settled for weir's field.
fn set(map: &mut ObjectMap, path: &[&str], value: Value) {
    if let Err(value) = try_set(map, path, value) {
        let Some((last, parents)) = path.split_last() else { return };
        let mut node = map;
        for segment in parents {
            let entry = node.entry(KeyString::from(*segment)).or_insert(Value::Null);
            if !matches!(entry, Value::Object(_)) {
                *entry = Value::Object(ObjectMap::new());
            }
            let Value::Object(inner) = entry else { return };
            node = inner;
        }
        node.insert(KeyString::from(*last), value);
    }
}

/// An OTLP value as an event value. Bytes become base64, as in OTLP/JSON; NaN becomes null
/// (an event's floats are numbers).
pub fn any_value(value: AnyValue) -> Value {
    use any_value::Value as V;
    match value.value {
        None => Value::Null,
        Some(V::StringValue(s)) => Value::Bytes(Bytes::from(s)),
        Some(V::BoolValue(b)) => Value::Boolean(b),
        Some(V::IntValue(i)) => Value::Integer(i),
        Some(V::DoubleValue(d)) => {
            ordered_float::NotNan::new(d).map(Value::Float).unwrap_or(Value::Null)
        }
        Some(V::ArrayValue(a)) => Value::Array(a.values.into_iter().map(any_value).collect()),
        Some(V::KvlistValue(kv)) => Value::Object(
            kv.values
                .into_iter()
                .map(|KeyValue { key, value }| {
                    (KeyString::from(key), value.map(any_value).unwrap_or(Value::Null))
                })
                .collect(),
        ),
        Some(V::BytesValue(b)) => {
            use base64::Engine;
            Value::from(base64::engine::general_purpose::STANDARD.encode(b))
        }
    }
}

/// A time in nanoseconds since the epoch; 0 (unknown) and times past 2262 are `None`.
fn time(nanos: u64) -> Option<DateTime<Utc>> {
    let nanos = i64::try_from(nanos).ok().filter(|n| *n > 0)?;
    Some(DateTime::from_timestamp_nanos(nanos))
}

/// A trace or span id as lowercase hex, when it has its length and is not all zeros.
fn hex_id(id: &[u8], len: usize) -> Option<String> {
    if id.len() != len || id.iter().all(|b| *b == 0) {
        return None;
    }
    Some(crate::hex::lower_hex(id))
}

/// The short name of a severity number (the OpenTelemetry log data model's).
fn severity_name(number: i32) -> Option<&'static str> {
    const NAMES: [&str; 24] = [
        "TRACE", "TRACE2", "TRACE3", "TRACE4", "DEBUG", "DEBUG2", "DEBUG3", "DEBUG4", "INFO",
        "INFO2", "INFO3", "INFO4", "WARN", "WARN2", "WARN3", "WARN4", "ERROR", "ERROR2", "ERROR3",
        "ERROR4", "FATAL", "FATAL2", "FATAL3", "FATAL4",
    ];
    usize::try_from(number).ok()?.checked_sub(1).and_then(|i| NAMES.get(i)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope, KeyValueList};
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn s(v: &str) -> Option<AnyValue> {
        Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) })
    }

    fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
        KeyValue { key: key.into(), value }
    }

    fn json(event: &Event) -> serde_json::Value {
        serde_json::to_value(event.fields()).unwrap()
    }

    fn request(resource: Vec<KeyValue>, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource { attributes: resource, ..Default::default() }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "app.inference".into(),
                        version: "1.2".into(),
                        ..Default::default()
                    }),
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn maps_a_record_to_ecs_fields() {
        let record = LogRecord {
            time_unix_nano: 1_700_000_000_123_456_789,
            observed_time_unix_nano: 1_700_000_001_000_000_000,
            severity_number: 13,
            severity_text: "WARN".into(),
            body: s("model loaded"),
            attributes: vec![
                kv("code.file.path", s("/app/main.py")),
                kv(
                    "code.line.number",
                    Some(AnyValue { value: Some(any_value::Value::IntValue(42)) }),
                ),
                kv("model", s("resnet50")),
                kv("service.name", s("record-wins")),
            ],
            flags: 1,
            trace_id: (1..=16).collect(),
            span_id: vec![0, 0, 0, 0, 0, 0, 0, 7],
            ..Default::default()
        };
        let resource = vec![
            kv("service.name", s("triton")),
            kv("service.version", s("2.41")),
            kv("k8s.namespace.name", s("ml")),
            kv("k8s.pod.name", s("triton-0")),
            kv("k8s.pod.label.app.kubernetes.io/name", s("triton")),
            kv("telemetry.sdk.language", s("python")),
        ];
        let events = events(request(resource, vec![record]), Utc::now());
        assert_eq!(events.len(), 1);
        let got = json(&events[0]);
        let expected = serde_json::json!({
            "@timestamp": "2023-11-14T22:13:20.123456789Z",
            "message": "model loaded",
            "log": {"level": "WARN", "logger": "app.inference",
                    "origin": {"file": {"name": "/app/main.py", "line": 42}}},
            "event": {"severity": 13, "created": "2023-11-14T22:13:21Z"},
            "trace": {"id": "0102030405060708090a0b0c0d0e0f10"},
            "span": {"id": "0000000000000007"},
            "service": {"name": "record-wins", "version": "2.41"},
            "kubernetes": {"namespace": "ml", "pod": {"name": "triton-0"},
                           "labels": {"app.kubernetes.io/name": "triton"}},
            "otel": {"resource": {"telemetry.sdk.language": "python"},
                     "attributes": {"model": "resnet50"},
                     "scope": {"version": "1.2"}, "trace_flags": 1},
        });
        assert_eq!(got, expected);
    }

    #[test]
    fn keeps_structured_bodies_and_falls_back_on_times_and_levels() {
        let body = AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![
                    kv(
                        "latency_ms",
                        Some(AnyValue { value: Some(any_value::Value::DoubleValue(12.5)) }),
                    ),
                    kv(
                        "tags",
                        Some(AnyValue {
                            value: Some(any_value::Value::ArrayValue(ArrayValue {
                                values: vec![
                                    s("a").unwrap(),
                                    AnyValue { value: Some(any_value::Value::BoolValue(true)) },
                                ],
                            })),
                        }),
                    ),
                    kv(
                        "raw",
                        Some(AnyValue {
                            value: Some(any_value::Value::BytesValue(b"hi".to_vec())),
                        }),
                    ),
                    kv(
                        "nan",
                        Some(AnyValue { value: Some(any_value::Value::DoubleValue(f64::NAN)) }),
                    ),
                ],
            })),
        };
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let records = vec![
            LogRecord {
                observed_time_unix_nano: 1_000_000_000,
                severity_number: 17,
                body: Some(body),
                ..Default::default()
            },
            // No time at all, invalid ids, an unknown severity: the time weir read it, no ids.
            LogRecord {
                severity_number: 99,
                trace_id: vec![0; 16],
                span_id: vec![1, 2],
                ..Default::default()
            },
        ];
        let got: Vec<_> = events(request(Vec::new(), records), now).iter().map(json).collect();
        assert_eq!(
            got[0]["message"],
            serde_json::json!({"latency_ms": 12.5, "tags": ["a", true], "raw": "aGk=", "nan": null})
        );
        assert_eq!(got[0]["@timestamp"], "1970-01-01T00:00:01Z");
        assert_eq!(got[0]["log"]["level"], "ERROR");
        assert_eq!(got[1]["@timestamp"], "2027-01-15T08:00:00Z");
        assert!(got[1].get("trace").is_none() && got[1].get("span").is_none());
        assert!(got[1]["log"].get("level").is_none() && got[1].get("message").is_none());
    }

    #[test]
    fn an_attribute_whose_field_is_taken_stays_under_its_prefix() {
        let resource =
            vec![kv("k8s.pod.name", s("p")), kv("k8s.pod", s("clash")), kv("k8s.", s("empty"))];
        let got = json(&events(request(resource, vec![LogRecord::default()]), Utc::now())[0]);
        assert_eq!(got["kubernetes"], serde_json::json!({"pod": {"name": "p"}}));
        assert_eq!(
            got["otel"]["resource"],
            serde_json::json!({"k8s.pod": "clash", "k8s.": "empty"})
        );
    }
}
