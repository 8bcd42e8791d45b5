//! The event: a tree of fields (VRL's [`Value`]) plus the metadata weir needs to deliver it.
//!
//! Fields use Elastic Common Schema names where a standard one exists (`message`,
//! `@timestamp`, `host.name`, `log.file.path`, `log.level`, `service.name`, `error.message`),
//! stored as nested objects so that VRL paths such as `.host.name` reach them.
//!
//! Fields that every event of a source has in common (the host a source runs on, the file a
//! line came from) are held once per source or file in [`SharedFields`] and referenced, not
//! copied into each event: four map nodes (~2.9 KB) per line that would otherwise be built,
//! held in every queue and freed. The event's fields are its own tree plus each shared
//! top-level entry whose key the tree does not have ("the tree shadows the shared fields").
//! Reads ([`Event::get`], [`Event::view`]) see both; a change that could reach into a shared
//! entry (a path through its key, [`Event::fields_mut`], [`Event::as_map_mut`]) first copies
//! the shared entries into the tree ([`Event::materialize`]), so no change is ever lost or
//! leaks into another event.
//!
//! The same mechanism holds one event's own fields in a compact form until they are first
//! read ([`SharedFields::deferred`]): a syslog message's header becomes the `log.syslog` and
//! `source` trees (six maps, ~17 keys) only when something reads them, which most
//! pipelines shipping syslog to Loki or a file never do. Reading builds them once (a
//! [`OnceLock`]); a change copies them into the tree like any shared entries.
//!
//! Invariant: the root of an event is always an object.

pub mod finalization;

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::ser::{Serialize, SerializeMap, Serializer};
use vrl::path::{OwnedSegment, OwnedValuePath};
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
pub const ALLOCATION_BYTES: usize = 16;

/// A log event.
#[derive(Debug, Clone)]
pub struct Event {
    fields: Value,
    /// Top-level entries shared with other events; part of this event unless `fields` has
    /// the same key.
    shared: Option<Arc<SharedFields>>,
    meta: EventMetadata,
}

/// Top-level fields held outside an event's tree: once for many events, or deferred (see the
/// module documentation).
#[derive(Debug)]
pub struct SharedFields {
    /// Always an object once set; set from the start unless deferred.
    value: OnceLock<Value>,
    /// What builds `value` on first read, for deferred fields.
    deferred: Option<Box<dyn DeferredFields>>,
    /// Estimated heap size of the entries, added to an event's size when they are copied
    /// into it. Zero for deferred fields: their event counts them from the start.
    size: usize,
}

/// One event's top-level fields kept compact and built into maps when first read.
pub trait DeferredFields: std::fmt::Debug + Send + Sync {
    /// Whether the built fields will have top-level `key`: answered without building them,
    /// and exactly (a key promised here and missing once built would read as absent).
    fn has_key(&self, key: &str) -> bool;
    /// The fields as maps.
    fn build(&self) -> ObjectMap;
}

impl SharedFields {
    pub fn new(map: ObjectMap) -> Arc<Self> {
        let value = Value::Object(map);
        let size = estimate_size(&value);
        Arc::new(Self { value: OnceLock::from(value), deferred: None, size })
    }

    /// Fields built by `fields` when first read. The event they are given to must already
    /// count their built size (they add nothing when copied into it).
    pub fn deferred(fields: impl DeferredFields + 'static) -> Arc<Self> {
        Arc::new(Self { value: OnceLock::new(), deferred: Some(Box::new(fields)), size: 0 })
    }

    fn value(&self) -> &Value {
        self.value.get_or_init(|| {
            Value::Object(self.deferred.as_ref().map(|d| d.build()).unwrap_or_default())
        })
    }

    fn map(&self) -> &ObjectMap {
        match self.value() {
            Value::Object(map) => map,
            _ => unreachable!("SharedFields stores an object"),
        }
    }

    /// The entries, built if they were deferred and never read.
    fn into_map(mut self) -> ObjectMap {
        self.value();
        match self.value.take() {
            Some(Value::Object(map)) => map,
            _ => unreachable!("SharedFields stores an object"),
        }
    }

    /// Whether the fields have top-level `key`, without building deferred ones.
    fn has_key(&self, key: &str) -> bool {
        match (self.value.get(), &self.deferred) {
            (None, Some(deferred)) => deferred.has_key(key),
            _ => self.map().contains_key(key),
        }
    }
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
        Self {
            fields: Value::Object(map),
            shared: None,
            meta: EventMetadata { size, ..Default::default() },
        }
    }

    /// Adds fields shared with other events (the tree's own keys keep precedence). Any shared
    /// fields the event had are copied into its tree first.
    pub fn with_shared(mut self, shared: &Arc<SharedFields>) -> Self {
        self.materialize();
        self.shared = Some(Arc::clone(shared));
        self
    }

    /// Copies the shared entries the tree does not shadow into the tree; afterwards the tree
    /// alone is the event's fields.
    pub fn materialize(&mut self) {
        let Some(shared) = self.shared.take() else { return };
        let size = shared.size;
        let map = self.own_map_mut();
        match Arc::try_unwrap(shared) {
            // This event held the last reference (deferred fields, or the source has gone):
            // the entries move.
            Ok(owned) => {
                for (k, v) in owned.into_map() {
                    map.entry(k).or_insert(v);
                }
            }
            Err(shared) => {
                for (k, v) in shared.map() {
                    if !map.contains_key(k.as_str()) {
                        map.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        self.meta.size += size;
    }

    /// The shared fields when they serve top-level `key` (they have it; the tree does not).
    fn shared_for(&self, key: &str) -> Option<&SharedFields> {
        let shared = self.shared.as_deref()?;
        let shadowed = self.fields.as_object().is_some_and(|m| m.contains_key(key));
        (!shadowed && shared.has_key(key)).then_some(shared)
    }

    /// Whether a change at `path` could reach into a shared entry.
    fn touches_shared(&self, path: &OwnedValuePath) -> bool {
        let Some(shared) = &self.shared else { return false };
        match path.segments.first() {
            Some(OwnedSegment::Field(k)) => shared.has_key(k.as_str()),
            _ => true,
        }
    }

    /// The event's fields (its tree and the shared entries it does not shadow), for
    /// serializing as one object.
    pub fn view(&self) -> FieldsView<'_> {
        FieldsView(self)
    }

    /// Every top-level entry, in key order as the materialized tree would give them: the
    /// tree's and the shared ones it does not shadow.
    pub fn top_level(&self) -> impl Iterator<Item = (&KeyString, &Value)> {
        let mut own = self.fields.as_object().into_iter().flatten().peekable();
        let mut shared =
            self.shared.as_deref().map(SharedFields::map).into_iter().flatten().peekable();
        std::iter::from_fn(move || match (own.peek(), shared.peek()) {
            (Some((a, _)), Some((b, _))) => match a.as_str().cmp(b.as_str()) {
                std::cmp::Ordering::Less => own.next(),
                std::cmp::Ordering::Greater => shared.next(),
                std::cmp::Ordering::Equal => {
                    shared.next();
                    own.next()
                }
            },
            (Some(_), None) => own.next(),
            (None, Some(_)) => shared.next(),
            (None, None) => None,
        })
    }

    /// A top-level entry, the tree's or an unshadowed shared one.
    pub fn get_top(&self, key: &str) -> Option<&Value> {
        match self.shared_for(key) {
            Some(shared) => shared.map().get(key),
            None => self.fields.as_object().and_then(|m| m.get(key)),
        }
    }

    /// The size estimate the event will have once its shared entries are copied into it (an
    /// event read back from a disk buffer has them all in its tree).
    pub fn materialized_size(&self) -> usize {
        self.meta.size + self.shared.as_deref().map_or(0, |s| s.size)
    }

    /// Number of top-level entries (see [`Event::top_level`]).
    pub fn top_level_len(&self) -> usize {
        self.top_level().count()
    }

    /// An event with the given fields; a non-object value is stored under `message`.
    pub fn from_value(value: Value) -> Self {
        match value {
            Value::Object(map) => {
                let mut event = Self {
                    fields: Value::Object(map),
                    shared: None,
                    meta: EventMetadata::default(),
                };
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

    /// The event's own tree. Shared entries it does not shadow are not in it: use
    /// [`Event::view`], [`Event::get`] or [`Event::top_level`] to see them, or
    /// [`Event::materialize`] first.
    pub fn fields(&self) -> &Value {
        &self.fields
    }

    /// All the fields, for any change (the shared entries are copied in first).
    pub fn fields_mut(&mut self) -> &mut Value {
        self.materialize();
        &mut self.fields
    }

    /// Replaces all the fields (shared ones included); a non-object value is stored under
    /// `message`.
    pub fn set_fields(&mut self, value: Value) {
        self.shared = None;
        self.fields = match value {
            Value::Object(_) => value,
            other => {
                let mut map = ObjectMap::new();
                map.insert(KeyString::from("message"), other);
                Value::Object(map)
            }
        };
    }

    /// The root object, for any change (the shared entries are copied in first).
    pub fn as_map_mut(&mut self) -> &mut ObjectMap {
        self.materialize();
        self.own_map_mut()
    }

    /// The root object of the event's own tree, for adding or replacing top-level entries
    /// only: an entry written here shadows a shared one of the same key, as replacing it
    /// would. Removing entries through it would not remove shared ones: use
    /// [`Event::as_map_mut`] for that.
    pub fn own_map_mut(&mut self) -> &mut ObjectMap {
        // The invariant that the root is an object is kept by every constructor and by
        // [`Event::set_fields`]; should it ever be broken, the fields are reset rather than
        // panicking on input.
        if !matches!(self.fields, Value::Object(_)) {
            self.fields = Value::Object(ObjectMap::new());
        }
        match &mut self.fields {
            Value::Object(map) => map,
            _ => unreachable!("the root was made an object just above"),
        }
    }

    /// The root object of the event's own tree (see [`Event::fields`]).
    pub fn as_map(&self) -> Option<&ObjectMap> {
        self.fields.as_object()
    }

    pub fn get(&self, path: &OwnedValuePath) -> Option<&Value> {
        if let Some(OwnedSegment::Field(k)) = path.segments.first()
            && let Some(shared) = self.shared_for(k.as_str())
        {
            return shared.value().get(path);
        }
        self.fields.get(path)
    }

    pub fn insert(&mut self, path: &OwnedValuePath, value: Value) -> Option<Value> {
        if self.touches_shared(path) {
            self.materialize();
        }
        self.fields.insert(path, value)
    }

    pub fn remove(&mut self, path: &OwnedValuePath) -> Option<Value> {
        if self.touches_shared(path) {
            self.materialize();
        }
        self.fields.remove(path, true)
    }

    /// Inserts (or replaces) a top-level field.
    pub fn insert_key(&mut self, key: &str, value: Value) {
        self.own_map_mut().insert(KeyString::from(key), value);
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

    /// All the fields (shared ones copied in) and the metadata.
    pub fn into_parts(mut self) -> (Value, EventMetadata) {
        self.materialize();
        (self.fields, self.meta)
    }

    pub fn from_parts(fields: Value, meta: EventMetadata) -> Self {
        let mut event = Self { fields: Value::Null, shared: None, meta };
        event.set_fields(fields);
        event
    }
}

/// An event's fields serialized as one object, in key order: the tree's entries and the
/// shared ones it does not shadow ([`Event::top_level`]).
pub struct FieldsView<'a>(&'a Event);

impl Serialize for FieldsView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let event = self.0;
        if event.shared.is_none() {
            return event.fields.serialize(serializer);
        }
        let mut map = serializer.serialize_map(Some(event.top_level_len()))?;
        for (k, v) in event.top_level() {
            map.serialize_entry(k, v)?;
        }
        map.end()
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

    /// A line event with shared `host.name` and `log.file.path`, and the same event built
    /// with them in its own tree.
    fn shared_and_owned() -> (Event, Event) {
        let mut map = ObjectMap::new();
        let mut host = ObjectMap::new();
        host.insert("name".into(), Value::from("h1"));
        map.insert("host".into(), Value::Object(host));
        let mut file = ObjectMap::new();
        file.insert("path".into(), Value::from("/var/log/a.log"));
        let mut log = ObjectMap::new();
        log.insert("file".into(), Value::Object(file));
        map.insert("log".into(), Value::Object(log));
        let shared = SharedFields::new(map.clone());
        let lazy = Event::from_message("hi").with_shared(&shared);
        let mut owned = Event::from_message("hi");
        for (k, v) in map {
            owned.insert_key(&k, v);
        }
        (lazy, owned)
    }

    fn json(e: &Event) -> String {
        serde_json::to_string(&e.view()).unwrap()
    }

    #[test]
    fn shared_fields_read_and_serialize_as_if_they_were_the_events_own() {
        let (lazy, owned) = shared_and_owned();
        assert_eq!(json(&lazy), json(&owned));
        assert_eq!(
            json(&lazy),
            r#"{"host":{"name":"h1"},"log":{"file":{"path":"/var/log/a.log"}},"message":"hi"}"#
        );
        for path in ["host.name", "log.file.path", "log.file", "message", "nothing.here"] {
            let p = parse_path(path).unwrap();
            assert_eq!(lazy.get(&p), owned.get(&p), "{path}");
        }
        assert_eq!(lazy.top_level_len(), 3);
        assert_eq!(lazy.get_top("host"), owned.get_top("host"));
        // Copying them in gives the same tree and accounts for their size.
        let mut m = lazy.clone();
        m.materialize();
        assert_eq!(m.fields(), owned.fields());
        assert_eq!(m.size(), lazy.materialized_size());
        assert!(lazy.materialized_size() > lazy.size() + 2000, "{}", lazy.materialized_size());
    }

    #[test]
    fn changes_to_shared_fields_stay_in_their_event() {
        let (lazy, owned) = shared_and_owned();
        type Change = Box<dyn Fn(&mut Event)>;
        let changes: Vec<(&str, Change)> = vec![
            (
                "insert beside",
                Box::new(|e| {
                    e.insert(&parse_path("host.ip").unwrap(), Value::from("10.0.0.1"));
                }),
            ),
            (
                "remove one",
                Box::new(|e| {
                    e.remove(&parse_path("log.file.path").unwrap());
                }),
            ),
            (
                "remove whole",
                Box::new(|e| {
                    e.remove(&parse_path("host").unwrap());
                }),
            ),
            ("replace top", Box::new(|e| e.insert_key("host", Value::from("plain")))),
            (
                "replace in own map",
                Box::new(|e| {
                    e.own_map_mut().insert("log".into(), Value::from(1));
                }),
            ),
            (
                "any change",
                Box::new(|e| {
                    e.as_map_mut().remove("log");
                }),
            ),
            (
                "vrl-like",
                Box::new(|e| {
                    if let Value::Object(m) = e.fields_mut() {
                        m.remove("host");
                    }
                }),
            ),
        ];
        for (what, change) in changes {
            let (mut a, mut b) = (lazy.clone(), owned.clone());
            change(&mut a);
            change(&mut b);
            assert_eq!(json(&a), json(&b), "{what}");
            assert_eq!(a.top_level_len(), b.top_level_len(), "{what}");
            // Another event holding the same shared fields is untouched.
            assert_eq!(json(&lazy), json(&owned), "{what}");
        }
    }

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
