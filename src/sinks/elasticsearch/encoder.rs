//! Events to bulk NDJSON: for each event an action line and a document line, both ending in
//! `\n`, as the `_bulk` API requires.
//!
//! ```text
//! {"create":{"_index":"logs-model-2026.11.27","_id":"req-42"}}
//! {"@timestamp":"2026-11-27T10:00:00Z","log":{"level":"INFO"},"message":"...","service":{"name":"triton"}}
//! ```
//!
//! The document is the event's fields as they are: weir's field names are already those of the
//! Elastic Common Schema (`@timestamp`, `message`, `log.level`, `host.name`, `service.name`),
//! held as nested objects, which is how ECS mappings expect them.
//!
//! The operation is `create` when the document has an `_id` (from `id_key`, or derived from
//! its content) and always in data-stream mode; a retry of a document that did arrive then
//! answers 409, which counts as delivered, so retries never duplicate. Without an `_id` the
//! operation is `index` and Elasticsearch chooses the id.
//!
//! Invariant: encoding is a pure function of the event, the settings and the time used for
//! events without `@timestamp`, so its output is tested byte for byte.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha1::{Digest, Sha1};
use vrl::path::OwnedValuePath;
use vrl::value::{KeyString, ObjectMap, Value};

use crate::event::Event;
use crate::sinks::util::driver::Rejection;
use crate::template::Template;

/// The bulk operation of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Index,
    Create,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Self::Index => "index",
            Self::Create => "create",
        }
    }
}

/// Working space kept between events, at most (see [`BulkEncoder::encode`]).
const SCRATCH_KEEP_BYTES: usize = 64 * 1024;

/// One encoded event: its two NDJSON lines and its operation.
///
/// `lines` is one exact-size allocation when encoded; once a request has been built, a slice
/// of that request's body (see [`super::service`]), so that a batch in flight holds its bytes
/// once.
#[derive(Debug, Clone)]
pub struct BulkItem {
    pub lines: Bytes,
    pub op: Op,
}

/// Where documents go.
#[derive(Debug, Clone)]
pub enum Target {
    /// `_bulk` into an index named by a template.
    Index(Template),
    /// A data stream `<type>-<dataset>-<namespace>`, each part a template.
    DataStream { kind: Template, dataset: Template, namespace: Template },
}

/// How `_id` is chosen.
#[derive(Debug, Clone)]
pub enum IdSource {
    /// Elasticsearch assigns one.
    Auto,
    /// The value of a field (events without it get an assigned id).
    Field(OwnedValuePath),
    /// A SHA-1 of the document: the same event always gets the same id.
    Content,
}

/// The encoder's settings, compiled from the config.
#[derive(Debug, Clone)]
pub struct BulkEncoder {
    pub target: Target,
    pub id: IdSource,
}

impl BulkEncoder {
    /// Encodes `event`; `now` names time-based indices of events without `@timestamp` and
    /// becomes the `@timestamp` of such events in data streams (which require one).
    /// `scratch` is working space kept by the caller from one event to the next.
    pub fn encode(
        &self,
        event: &mut Event,
        now: DateTime<Utc>,
        scratch: &mut Vec<u8>,
    ) -> Result<(String, BulkItem), Rejection> {
        let missing = |e: crate::template::MissingField| Rejection {
            reason: "missing_field",
            detail: format!("the index template needs the field `{}`", e.0),
        };
        let (index, op_default) = match &self.target {
            Target::Index(t) => (t.render(event, now).map_err(missing)?, Op::Index),
            Target::DataStream { kind, dataset, namespace } => {
                let kind = kind.render(event, now).map_err(missing)?;
                let dataset = dataset.render(event, now).map_err(missing)?;
                let namespace = namespace.render(event, now).map_err(missing)?;
                // Data streams require `@timestamp`; one already there (a string from parsed
                // JSON, say) is left for Elasticsearch to read.
                if event.get_top("@timestamp").is_none() {
                    event.insert_key("@timestamp", Value::Timestamp(now));
                }
                // Keep the document's data_stream fields in step with where it goes, as the
                // data stream mappings expect.
                let ds = event
                    .own_map_mut()
                    .entry(KeyString::from("data_stream"))
                    .or_insert_with(|| Value::Object(ObjectMap::new()));
                if let Value::Object(m) = ds {
                    m.insert("type".into(), Value::from(kind.as_str()));
                    m.insert("dataset".into(), Value::from(dataset.as_str()));
                    m.insert("namespace".into(), Value::from(namespace.as_str()));
                }
                (format!("{kind}-{dataset}-{namespace}"), Op::Create)
            }
        };
        // The document is written once, into working space, and copied once into an
        // allocation of its exact size behind the action line (the `_id` may be its digest).
        if scratch.capacity() > SCRATCH_KEEP_BYTES {
            // One huge event does not keep its working space for all the small ones after it.
            *scratch = Vec::new();
        }
        scratch.clear();
        // Serialising a VRL value into memory cannot fail: keys are strings and floats are
        // never NaN.
        let _ = serde_json::to_writer(&mut *scratch, &event.view());
        let id: Option<String> = match &self.id {
            IdSource::Auto => None,
            IdSource::Field(path) => match event.get(path) {
                Some(Value::Bytes(b)) if !b.is_empty() => Some(crate::utf8::lossy(b).into_owned()),
                Some(Value::Null) | None => None,
                Some(Value::Bytes(_)) => None,
                Some(v) => Some(v.to_string_lossy().into_owned()),
            },
            IdSource::Content => {
                let digest = Sha1::digest(&scratch[..]);
                Some(crate::hex::lower_hex(&digest))
            }
        };
        let op = if id.is_some() { Op::Create } else { op_default };
        // The action line goes into the working space behind the document.
        let doc_len = scratch.len();
        scratch.extend_from_slice(b"{\"");
        scratch.extend_from_slice(op.name().as_bytes());
        scratch.extend_from_slice(b"\":{\"_index\":");
        let _ = serde_json::to_writer(&mut *scratch, &index);
        if let Some(id) = &id {
            scratch.extend_from_slice(b",\"_id\":");
            let _ = serde_json::to_writer(&mut *scratch, id);
        }
        scratch.extend_from_slice(b"}}\n");
        let (doc, action) = scratch.split_at(doc_len);
        let mut lines = Vec::with_capacity(scratch.len() + 1);
        lines.extend_from_slice(action);
        lines.extend_from_slice(doc);
        lines.push(b'\n');
        // Length equal to capacity: the conversion takes the allocation as it is.
        Ok((index, BulkItem { lines: Bytes::from(lines), op }))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::event::parse_path;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap()
    }

    fn event() -> Event {
        let mut e = Event::from_message("GET /predictions/resnet-18 200 \"ok\"");
        e.insert(&parse_path("log.level").unwrap(), Value::from("INFO"));
        e.insert(&parse_path("service.name").unwrap(), Value::from("torchserve"));
        e.insert(&parse_path("http.request.id").unwrap(), Value::from("req-42"));
        e.insert_key(
            "@timestamp",
            Value::Timestamp(Utc.with_ymd_and_hms(2026, 11, 26, 23, 59, 58).unwrap()),
        );
        e
    }

    fn encode(enc: &BulkEncoder, mut e: Event) -> (String, String, Op) {
        let (index, item) = enc.encode(&mut e, now(), &mut Vec::new()).unwrap();
        (index, String::from_utf8(item.lines.to_vec()).unwrap(), item.op)
    }

    #[test]
    fn golden_bulk_lines_with_a_templated_index() {
        let enc = BulkEncoder {
            target: Target::Index(Template::parse("logs-{{ service.name }}-%Y.%m.%d").unwrap()),
            id: IdSource::Auto,
        };
        let (index, lines, op) = encode(&enc, event());
        assert_eq!(index, "logs-torchserve-2026.11.26");
        assert_eq!(op, Op::Index);
        assert_eq!(
            lines,
            concat!(
                r#"{"index":{"_index":"logs-torchserve-2026.11.26"}}"#,
                "\n",
                r#"{"@timestamp":"2026-11-26T23:59:58Z","http":{"request":{"id":"req-42"}},"#,
                r#""log":{"level":"INFO"},"message":"GET /predictions/resnet-18 200 \"ok\"","#,
                r#""service":{"name":"torchserve"}}"#,
                "\n"
            )
        );
    }

    #[test]
    fn golden_ids_from_a_field_and_from_content() {
        let by_field = BulkEncoder {
            target: Target::Index(Template::parse("weir").unwrap()),
            id: IdSource::Field(parse_path("http.request.id").unwrap()),
        };
        let (_, lines, op) = encode(&by_field, event());
        assert_eq!(op, Op::Create);
        assert!(lines.starts_with("{\"create\":{\"_index\":\"weir\",\"_id\":\"req-42\"}}\n"));
        // Without the field, Elasticsearch assigns the id.
        let mut e = event();
        e.remove(&parse_path("http.request.id").unwrap());
        let (_, lines, op) = encode(&by_field, e);
        assert_eq!(
            (op, lines.lines().next().unwrap()),
            (Op::Index, r#"{"index":{"_index":"weir"}}"#)
        );

        let by_content = BulkEncoder {
            target: Target::Index(Template::parse("weir").unwrap()),
            id: IdSource::Content,
        };
        let (_, a, _) = encode(&by_content, event());
        let (_, b, _) = encode(&by_content, event());
        assert_eq!(a, b, "the same event must get the same id");
        let doc = a.lines().nth(1).unwrap();
        let expected: String =
            Sha1::digest(doc.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            a.lines().next().unwrap(),
            format!(r#"{{"create":{{"_index":"weir","_id":"{expected}"}}}}"#)
        );
        let mut other = event();
        other.insert_key("message", Value::from("another line"));
        assert_ne!(encode(&by_content, other).1, a);
    }

    #[test]
    fn golden_data_stream_document() {
        let enc = BulkEncoder {
            target: Target::DataStream {
                kind: Template::parse("logs").unwrap(),
                dataset: Template::parse("{{ service.name }}").unwrap(),
                namespace: Template::parse("default").unwrap(),
            },
            id: IdSource::Auto,
        };
        let mut e = Event::from_message("no time");
        e.insert(&parse_path("service.name").unwrap(), Value::from("vllm"));
        let (index, lines, op) = encode(&enc, e);
        assert_eq!((index.as_str(), op), ("logs-vllm-default", Op::Create));
        assert_eq!(
            lines,
            concat!(
                r#"{"create":{"_index":"logs-vllm-default"}}"#,
                "\n",
                r#"{"@timestamp":"2026-11-27T10:00:00Z","data_stream":{"dataset":"vllm","#,
                r#""namespace":"default","type":"logs"},"message":"no time","#,
                r#""service":{"name":"vllm"}}"#,
                "\n"
            )
        );
    }

    #[test]
    fn a_timestamp_string_is_kept_in_data_streams() {
        let enc = BulkEncoder {
            target: Target::DataStream {
                kind: Template::parse("logs").unwrap(),
                dataset: Template::parse("x").unwrap(),
                namespace: Template::parse("y").unwrap(),
            },
            id: IdSource::Auto,
        };
        let mut e = Event::from_message("m");
        e.insert_key("@timestamp", Value::from("2025-01-02T03:04:05.678+01:00"));
        let (_, lines, _) = encode(&enc, e);
        assert!(lines.contains(r#""@timestamp":"2025-01-02T03:04:05.678+01:00""#), "{lines}");
    }

    #[test]
    fn a_missing_index_field_is_a_rejection_with_the_field_named() {
        let enc = BulkEncoder {
            target: Target::Index(Template::parse("logs-{{ kubernetes.namespace }}").unwrap()),
            id: IdSource::Auto,
        };
        let err = enc.encode(&mut event(), now(), &mut Vec::new()).unwrap_err();
        assert_eq!(err.reason, "missing_field");
        assert!(err.detail.contains("kubernetes.namespace"));
    }
}
