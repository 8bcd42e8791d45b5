//! The event: a tree of fields (VRL's [`Value`]) plus the metadata weir needs to deliver it.
//!
//! Fields use Elastic Common Schema names where a standard one exists (`message`,
//! `@timestamp`, `host.name`, `log.file.path`, `log.level`, `service.name`, `error.message`),
//! stored as nested objects so that VRL paths such as `.host.name` reach them.
//!
//! Invariant: the root of an event is always an object.

pub mod finalization;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use vrl::path::OwnedValuePath;
use vrl::value::{KeyString, ObjectMap};

pub use finalization::{BatchNotifier, BatchStatus, EventFinalizers, EventStatus};
pub use vrl::value::Value;

/// Fixed per-event overhead in bytes: the event struct in its batch's `Vec` and its
/// metadata.
const EVENT_OVERHEAD_BYTES: usize = 80;

/// One node of a `BTreeMap<KeyString, Value>`: 11 slots of a 24-byte key and a 40-byte value
/// plus bookkeeping, allocated whole even for a one-entry map.
const MAP_NODE_BYTES: usize = 720;
/// Entries per map node.
const MAP_NODE_SLOTS: usize = 11;
/// Allocator rounding and header of one small heap allocation (a key, a string).
const ALLOCATION_BYTES: usize = 16;

/// A log event.
#[derive(Debug, Clone)]
pub struct Event {
    fields: Value,
    meta: EventMetadata,
}

/// What travels with an event but is not one of its fields.
#[derive(Debug, Clone, Default)]
pub struct EventMetadata {
    /// Estimated heap size of the event in bytes; channels are bounded by the sum of these.
    /// Set by the source from the raw size, raised by transforms that add sizeable fields.
    size: usize,
    /// Acknowledgement handles of the source batches this event came from.
    finalizers: EventFinalizers,
}

impl Event {
    /// An event whose `message` field holds `message`.
    pub fn from_message(message: impl Into<Bytes>) -> Self {
        let message = message.into();
        let size = EVENT_OVERHEAD_BYTES + MAP_NODE_BYTES + 7 + ALLOCATION_BYTES + message.len();
        let mut map = ObjectMap::new();
        map.insert(KeyString::from("message"), Value::Bytes(message));
        Self { fields: Value::Object(map), meta: EventMetadata { size, ..Default::default() } }
    }

    /// An event with the given fields; a non-object value is stored under `message`.
    pub fn from_value(value: Value) -> Self {
        match value {
            Value::Object(map) => {
                let mut event = Self { fields: Value::Object(map), meta: EventMetadata::default() };
                event.recompute_size();
                event
            }
            other => {
                let mut map = ObjectMap::new();
                map.insert(KeyString::from("message"), other);
                Self::from_value(Value::Object(map))
            }
        }
    }

    pub fn fields(&self) -> &Value {
        &self.fields
    }

    pub fn fields_mut(&mut self) -> &mut Value {
        &mut self.fields
    }

    /// Replaces the fields; a non-object value is stored under `message`.
    pub fn set_fields(&mut self, value: Value) {
        self.fields = match value {
            Value::Object(_) => value,
            other => {
                let mut map = ObjectMap::new();
                map.insert(KeyString::from("message"), other);
                Value::Object(map)
            }
        };
    }

    /// The root object. The invariant that the root is an object is kept by every constructor
    /// and by [`Event::set_fields`]; should it ever be broken, the fields are reset rather than
    /// panicking on input.
    pub fn as_map_mut(&mut self) -> &mut ObjectMap {
        if !matches!(self.fields, Value::Object(_)) {
            self.fields = Value::Object(ObjectMap::new());
        }
        match &mut self.fields {
            Value::Object(map) => map,
            _ => unreachable!("the root was made an object just above"),
        }
    }

    pub fn as_map(&self) -> Option<&ObjectMap> {
        self.fields.as_object()
    }

    pub fn get(&self, path: &OwnedValuePath) -> Option<&Value> {
        self.fields.get(path)
    }

    pub fn insert(&mut self, path: &OwnedValuePath, value: Value) -> Option<Value> {
        self.fields.insert(path, value)
    }

    pub fn remove(&mut self, path: &OwnedValuePath) -> Option<Value> {
        self.fields.remove(path, true)
    }

    /// Inserts a top-level field.
    pub fn insert_key(&mut self, key: &str, value: Value) {
        self.as_map_mut().insert(KeyString::from(key), value);
    }

    /// The `message` field as bytes, if it is a string.
    pub fn message(&self) -> Option<&Bytes> {
        match self.fields.as_object()?.get("message")? {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The event's time: `@timestamp` when it is a timestamp, else `None`.
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        match self.fields.as_object()?.get("@timestamp")? {
            Value::Timestamp(ts) => Some(*ts),
            _ => None,
        }
    }

    /// Estimated heap size in bytes.
    pub fn size(&self) -> usize {
        self.meta.size
    }

    /// Adds `bytes` to the size estimate (a transform that added fields of that size).
    pub fn grow(&mut self, bytes: usize) {
        self.meta.size += bytes;
    }

    /// Sets the size estimate to a known figure (an event read back from a disk buffer keeps
    /// the estimate it was written with).
    pub fn set_size(&mut self, bytes: usize) {
        self.meta.size = bytes;
    }

    /// Sets the size estimate from the fields as they are now (walks the whole tree).
    pub fn recompute_size(&mut self) {
        self.meta.size = EVENT_OVERHEAD_BYTES + estimate_size(&self.fields);
    }

    pub fn metadata(&self) -> &EventMetadata {
        &self.meta
    }

    pub fn finalizers_mut(&mut self) -> &mut EventFinalizers {
        &mut self.meta.finalizers
    }

    /// Attaches a source batch's acknowledgement handle.
    pub fn with_notifier(mut self, notifier: &BatchNotifier) -> Self {
        self.meta.finalizers.add(notifier);
        self
    }

    /// Marks the outcome of delivery; the worst status over all clones wins.
    pub fn update_status(&self, status: EventStatus) {
        self.meta.finalizers.update_status(status);
    }

    /// Moves the acknowledgement handles of `other` into this event (used when events merge).
    pub fn merge_finalizers(&mut self, other: &mut Event) {
        let taken = std::mem::take(&mut other.meta.finalizers);
        self.meta.finalizers.merge(taken);
    }

    pub fn into_parts(self) -> (Value, EventMetadata) {
        (self.fields, self.meta)
    }

    pub fn from_parts(fields: Value, meta: EventMetadata) -> Self {
        let mut event = Self { fields: Value::Null, meta };
        event.set_fields(fields);
        event
    }
}

impl EventMetadata {
    pub fn finalizers(&self) -> &EventFinalizers {
        &self.finalizers
    }
}

/// Sum of the estimated sizes of `events`.
pub fn batch_size(events: &[Event]) -> usize {
    events.iter().map(Event::size).sum()
}

/// Estimated heap bytes held by a value: map nodes, keys, strings and array slots. Strings
/// that are slices of a shared read buffer count their length (together they cover the
/// buffer). Scalars live inside their slot and cost nothing more.
pub fn estimate_size(value: &Value) -> usize {
    match value {
        Value::Bytes(b) => b.len() + ALLOCATION_BYTES,
        Value::String(s) => s.len() + ALLOCATION_BYTES,
        Value::Object(map) => {
            MAP_NODE_BYTES * map.len().div_ceil(MAP_NODE_SLOTS).max(1)
                + map
                    .iter()
                    .map(|(k, v)| k.len() + ALLOCATION_BYTES + estimate_size(v))
                    .sum::<usize>()
        }
        Value::Array(items) => {
            ALLOCATION_BYTES
                + items.len() * std::mem::size_of::<Value>()
                + items.iter().map(estimate_size).sum::<usize>()
        }
        _ => 0,
    }
}

/// Estimated bytes of the nodes of a map with `entries` entries.
pub fn map_nodes_bytes(entries: usize) -> usize {
    MAP_NODE_BYTES * entries.div_ceil(MAP_NODE_SLOTS).max(1)
}

/// Parses a field path as users write it in configuration (`service.name`, `log.file.path`,
/// `"@timestamp"`, `.message`), with or without the leading dot.
pub fn parse_path(path: &str) -> Result<OwnedValuePath, String> {
    let trimmed = path.trim();
    let trimmed = trimmed.strip_prefix('.').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Ok(OwnedValuePath::root());
    }
    // `@timestamp` and other names with characters VRL paths do not allow bare are quoted
    // segment by segment.
    let quoted: Vec<String> = split_path_segments(trimmed)
        .into_iter()
        .map(|seg| {
            if seg.starts_with('"')
                || seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || seg.starts_with('[')
            {
                seg
            } else {
                format!("\"{}\"", seg.replace('\\', "\\\\").replace('"', "\\\""))
            }
        })
        .collect();
    let joined = quoted.join(".").replace(".[", "[");
    vrl::path::parse_value_path(&joined).map_err(|e| format!("invalid field path \"{path}\": {e}"))
}

fn split_path_segments(path: &str) -> Vec<String> {
    let mut segments = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_quotes => {
                current.push(c);
                if let Some(n) = chars.next() {
                    current.push(n);
                }
            }
            '"' => {
                in_quotes = !in_quotes;
                current.push(c);
            }
            '.' if !in_quotes => segments.push(std::mem::take(&mut current)),
            '[' if !in_quotes => {
                if !current.is_empty() {
                    segments.push(std::mem::take(&mut current));
                }
                current.push(c);
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        segments.push(current);
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_as_users_write_them() {
        let mut event = Event::from_message("hi");
        for (path, expected) in [
            ("service.name", r#"{"message":"hi","service":{"name":"x"}}"#),
            ("@timestamp", r#"{"@timestamp":"x","message":"hi"}"#),
            (".log.file.path", r#"{"log":{"file":{"path":"x"}},"message":"hi"}"#),
        ] {
            let mut e = event.clone();
            e.insert(&parse_path(path).unwrap(), Value::from("x"));
            assert_eq!(serde_json::to_string(e.fields()).unwrap(), expected, "{path}");
        }
        event.insert(&parse_path("a[1]").unwrap(), Value::from(1));
        assert_eq!(
            serde_json::to_string(event.fields()).unwrap(),
            r#"{"a":[null,1],"message":"hi"}"#
        );
    }
}
