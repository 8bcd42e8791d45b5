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
//! A line event's `message` and `@timestamp` are held beside the tree, not in it
//! ([`Event::line`]): a pipeline that ships lines without changing them (a raw file, a
//! syslog MSG written out as it came) then builds no map for them, and each line costs no
//! more than the slice of its read buffer and its place in a batch. A read sees them as
//! top-level entries; an entry of the tree shadows one of the same key beside it (a parser
//! that writes `message` into the root replaces the line's), and they shadow shared fields.
//! A change by path, or anything that hands out the whole tree ([`Event::as_map_mut`]), moves
//! them into the tree first; [`Event::own_map_mut`] (adding entries) leaves them beside it.
//!
//! Invariant: the root of an event is always an object.

pub mod block;
pub mod finalization;

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::ser::{Serialize, SerializeMap, Serializer};
use vrl::path::{OwnedSegment, OwnedValuePath};
use vrl::value::{KeyString, ObjectMap};

pub use block::LineBlock;
pub use finalization::{BatchNotifier, BatchStatus, EventFinalizers, EventStatus};
pub use vrl::value::Value;

/// Fixed per-event overhead in bytes: the event struct in its batch's `Vec` and its
/// metadata.
const EVENT_OVERHEAD_BYTES: usize = std::mem::size_of::<Event>();

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
    /// Top-level entries held beside the tree, one slot per key of [`LOOSE_KEYS`]: part of
    /// the event's own fields unless `fields` has the same key.
    loose: [Option<Value>; 2],
    /// Top-level entries shared with other events; part of this event unless `fields` has
    /// the same key.
    shared: Option<Arc<SharedFields>>,
    meta: EventMetadata,
}

/// The keys an event can hold beside its tree, in key order.
const LOOSE_KEYS: [&str; 2] = ["@timestamp", "message"];
const TIMESTAMP: usize = 0;
const MESSAGE: usize = 1;

/// [`LOOSE_KEYS`] as the map keys reads hand out.
static LOOSE_KEY_STRINGS: std::sync::LazyLock<[KeyString; 2]> =
    std::sync::LazyLock::new(|| LOOSE_KEYS.map(KeyString::from));

fn loose_slot(key: &str) -> Option<usize> {
    LOOSE_KEYS.iter().position(|k| *k == key)
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
        // Beside the tree the message costs its bytes only; moving it into the tree adds the
        // map node and its key ([`Event::settle`]).
        let size = EVENT_OVERHEAD_BYTES + message.len();
        let mut loose = [None, None];
        loose[MESSAGE] = Some(Value::Bytes(message));
        Self {
            fields: Value::Object(ObjectMap::new()),
            loose,
            shared: None,
            meta: EventMetadata { size, ..Default::default() },
        }
    }

    /// A line read at `now`: `message` and `@timestamp`, held beside the tree (an empty map
    /// allocates nothing) until something changes the event.
    pub fn line(message: Bytes, now: DateTime<Utc>) -> Self {
        let mut event = Self::from_message(message);
        event.loose[TIMESTAMP] = Some(Value::Timestamp(now));
        event
    }

    /// Adds fields shared with other events (the event's own keys keep precedence). Any
    /// shared fields the event had are copied into its tree first.
    pub fn with_shared(mut self, shared: &Arc<SharedFields>) -> Self {
        self.unshare();
        self.shared = Some(Arc::clone(shared));
        self
    }

    /// Copies the shared entries the event does not shadow, and moves the entries held
    /// beside the tree, into the tree; afterwards the tree alone is the event's fields.
    pub fn materialize(&mut self) {
        // In this order the size grows by what `materialized_size` foresees.
        self.settle();
        self.unshare();
    }

    /// Moves the entries held beside the tree into it.
    fn settle(&mut self) {
        if self.loose.iter().all(Option::is_none) {
            return;
        }
        self.meta.size += self.settle_growth();
        let loose = std::mem::take(&mut self.loose);
        let map = self.tree_mut();
        for (key, value) in LOOSE_KEYS.iter().zip(loose) {
            // An entry the tree shadows is dropped.
            if let Some(value) = value
                && !map.contains_key(*key)
            {
                map.insert(KeyString::from(*key), value);
            }
        }
    }

    /// What moving the entries held beside the tree into it adds to the size estimate: the
    /// value's own heap (a string's bytes) is counted already; its key and its place in a
    /// node are new.
    fn settle_growth(&self) -> usize {
        let tree = self.fields.as_object();
        let before = tree.map_or(0, |m| m.len());
        let (mut keys, mut added) = (0, 0);
        for (key, value) in LOOSE_KEYS.iter().zip(&self.loose) {
            if value.is_some() && !tree.is_some_and(|m| m.contains_key(*key)) {
                keys += key.len() + ALLOCATION_BYTES;
                added += 1;
            }
        }
        if added == 0 {
            return 0;
        }
        keys + map_nodes_bytes(before + added) - map_nodes_bytes(before)
    }

    /// Copies the shared entries the event does not shadow into its tree.
    fn unshare(&mut self) {
        let Some(shared) = self.shared.take() else { return };
        let size = shared.size;
        let loose: [bool; 2] = std::array::from_fn(|i| self.loose[i].is_some());
        let shadowed_by_loose = |k: &str| loose_slot(k).is_some_and(|i| loose[i]);
        let map = self.tree_mut();
        match Arc::try_unwrap(shared) {
            // This event held the last reference (deferred fields, or the source has gone):
            // the entries move.
            Ok(owned) => {
                for (k, v) in owned.into_map() {
                    if !shadowed_by_loose(k.as_str()) {
                        map.entry(k).or_insert(v);
                    }
                }
            }
            Err(shared) => {
                for (k, v) in shared.map() {
                    if !shadowed_by_loose(k.as_str()) && !map.contains_key(k.as_str()) {
                        map.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        self.meta.size += size;
    }

    /// Merges each shared object that an object of the event's own tree shadows into it, the
    /// event's entries winning: a parser that wrote `log.level` keeps the file source's
    /// `log.file.path`, as Logstash and Vector do. Costs a look-up per own object when the
    /// event has shared fields, nothing otherwise.
    pub fn merge_shadowed_shared(&mut self) {
        let Some(shared) = self.shared.clone() else { return };
        let Value::Object(tree) = &mut self.fields else { return };
        let mut added = 0;
        for (key, own) in tree.iter_mut() {
            if let Value::Object(own) = own
                && shared.has_key(key.as_str())
                && let Some(Value::Object(base)) = shared.map().get(key.as_str())
            {
                added += merge_under(own, base);
            }
        }
        // Deferred fields are counted in their event from the start.
        if shared.size > 0 {
            self.meta.size += added;
        }
    }

    /// The entry held beside the tree for top-level `key`, unless the tree shadows it.
    fn loose_entry(&self, key: &str) -> Option<&Value> {
        let value = self.loose[loose_slot(key)?].as_ref()?;
        (!self.fields.as_object().is_some_and(|m| m.contains_key(key))).then_some(value)
    }

    /// Whether the event's own fields (tree or beside it) have top-level `key`.
    fn owns(&self, key: &str) -> bool {
        self.loose_entry(key).is_some()
            || self.fields.as_object().is_some_and(|m| m.contains_key(key))
    }

    /// The shared fields when they serve top-level `key` (they have it; the event does not).
    fn shared_for(&self, key: &str) -> Option<&SharedFields> {
        let shared = self.shared.as_deref()?;
        (!self.owns(key) && shared.has_key(key)).then_some(shared)
    }

    /// Whether a change at `path` could reach into a shared entry.
    fn touches_shared(&self, path: &OwnedValuePath) -> bool {
        let Some(shared) = &self.shared else { return false };
        match path.segments.first() {
            Some(OwnedSegment::Field(k)) => shared.has_key(k.as_str()),
            _ => true,
        }
    }

    /// Whether a change at `path` could reach into an entry held beside the tree.
    fn touches_loose(&self, path: &OwnedValuePath) -> bool {
        match path.segments.first() {
            Some(OwnedSegment::Field(k)) => self.loose_entry(k.as_str()).is_some(),
            _ => self.loose.iter().any(Option::is_some),
        }
    }

    /// The event's fields (its own and the shared entries it does not shadow), for
    /// serializing as one object.
    pub fn view(&self) -> FieldsView<'_> {
        FieldsView(self)
    }

    /// Every top-level entry, in key order as the materialized tree would give them: the
    /// event's own (its tree's and those beside it) and the shared ones it does not shadow.
    pub fn top_level(&self) -> std::vec::IntoIter<(&KeyString, &Value)> {
        self.top_level_entries().into_iter()
    }

    /// [`Event::top_level`] as a vector. The tree's entries come in order and the few beside
    /// it or shared are placed by binary search: merging three iterators cost about five
    /// times as much (a tenth of scenario 2's instructions, serializing every event twice).
    pub fn top_level_entries(&self) -> Vec<(&KeyString, &Value)> {
        let tree = self.fields.as_object();
        let shared = self.shared.as_deref().map(SharedFields::map);
        let len = tree.map_or(0, |m| m.len()) + LOOSE_KEYS.len() + shared.map_or(0, |m| m.len());
        let mut out = Vec::with_capacity(len);
        out.extend(tree.into_iter().flatten());
        let loose = LOOSE_KEY_STRINGS
            .iter()
            .zip(&self.loose)
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)));
        // Own entries before shared ones: an entry already placed shadows a later one.
        for (key, value) in loose.chain(shared.into_iter().flatten()) {
            if let Err(i) = out.binary_search_by(|(k, _)| k.as_str().cmp(key.as_str())) {
                out.insert(i, (key, value));
            }
        }
        out
    }

    /// A top-level entry: the event's own or an unshadowed shared one.
    pub fn get_top(&self, key: &str) -> Option<&Value> {
        if let Some(v) = self.loose_entry(key) {
            return Some(v);
        }
        match self.shared_for(key) {
            Some(shared) => shared.map().get(key),
            None => self.fields.as_object().and_then(|m| m.get(key)),
        }
    }

    /// The size estimate the event will have once all its entries are in its tree (an event
    /// read back from a disk buffer has them all there).
    pub fn materialized_size(&self) -> usize {
        self.meta.size + self.shared.as_deref().map_or(0, |s| s.size) + self.settle_growth()
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
                    loose: Default::default(),
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

    /// The event's own tree. Shared entries it does not shadow, and a line's `message` and
    /// `@timestamp` until the event is changed, are not in it: use [`Event::view`],
    /// [`Event::get`] or [`Event::top_level`] to see them, or [`Event::materialize`] first.
    pub fn fields(&self) -> &Value {
        &self.fields
    }

    /// All the fields, for any change (every entry is moved or copied into the tree first).
    pub fn fields_mut(&mut self) -> &mut Value {
        self.materialize();
        &mut self.fields
    }

    /// Replaces all the fields (shared ones included); a non-object value is stored under
    /// `message`.
    pub fn set_fields(&mut self, value: Value) {
        self.shared = None;
        self.loose = Default::default();
        self.fields = match value {
            Value::Object(_) => value,
            other => {
                let mut map = ObjectMap::new();
                map.insert(KeyString::from("message"), other);
                Value::Object(map)
            }
        };
    }

    /// The root object, for any change (every entry is moved or copied into the tree first).
    pub fn as_map_mut(&mut self) -> &mut ObjectMap {
        self.materialize();
        self.tree_mut()
    }

    /// The root object of the event's own tree, for adding or replacing top-level entries
    /// only: an entry written here shadows one of the same key held beside the tree or
    /// shared, as replacing it would. Removing entries through it would not remove those:
    /// use [`Event::as_map_mut`] for that.
    pub fn own_map_mut(&mut self) -> &mut ObjectMap {
        self.tree_mut()
    }

    /// The tree's root object as it is.
    fn tree_mut(&mut self) -> &mut ObjectMap {
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
        if let Some(OwnedSegment::Field(k)) = path.segments.first() {
            if let Some(value) = self.loose_entry(k.as_str()) {
                return value.get(&path.segments[1..]);
            }
            if let Some(shared) = self.shared_for(k.as_str()) {
                return shared.value().get(path);
            }
        }
        self.fields.get(path)
    }

    pub fn insert(&mut self, path: &OwnedValuePath, value: Value) -> Option<Value> {
        if self.touches_loose(path) {
            self.settle();
        }
        if self.touches_shared(path) {
            self.unshare();
        }
        self.fields.insert(path, value)
    }

    pub fn remove(&mut self, path: &OwnedValuePath) -> Option<Value> {
        // A top-level entry held beside the tree is taken from its slot. Moving every entry
        // there into the tree first, only to remove one of them, cost a map node and two key
        // strings per event (`remove` of `message` after a parser). The slot is emptied too
        // when the tree shadows it, or the slot's value would show once the tree's is gone.
        if let [OwnedSegment::Field(k)] = path.segments.as_slice()
            && let Some(i) = loose_slot(k.as_str())
            && self.loose[i].is_some()
        {
            // Shared entries under the same key stay shadowed: copied only where nothing
            // of the event's own is, and the slot is still full.
            if self.touches_shared(path) {
                self.unshare();
            }
            let beside = self.loose[i].take();
            return self.tree_mut().remove(k.as_str()).or(beside);
        }
        if self.touches_loose(path) {
            self.settle();
        }
        if self.touches_shared(path) {
            self.unshare();
        }
        self.fields.remove(path, true)
    }

    /// Inserts (or replaces) a top-level field. An entry held beside the tree is replaced
    /// in place; the others stay where they are.
    pub fn insert_key(&mut self, key: &str, value: Value) {
        match loose_slot(key) {
            Some(i) if self.loose_entry(key).is_some() => self.loose[i] = Some(value),
            _ => {
                self.tree_mut().insert(KeyString::from(key), value);
            }
        }
    }

    /// The `message` field as bytes, if it is a string.
    pub fn message(&self) -> Option<&Bytes> {
        match self.get_own("message")? {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The event's time: `@timestamp` when it is a timestamp, else `None`.
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        match self.get_own("@timestamp")? {
            Value::Timestamp(ts) => Some(*ts),
            _ => None,
        }
    }

    /// A top-level entry of the event's own fields (not a shared one).
    fn get_own(&self, key: &str) -> Option<&Value> {
        self.fields.as_object().and_then(|m| m.get(key)).or_else(|| self.loose_entry(key))
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
        let loose: usize = LOOSE_KEYS
            .iter()
            .zip(&self.loose)
            .filter_map(|(_, v)| v.as_ref().map(estimate_size))
            .sum();
        self.meta.size = EVENT_OVERHEAD_BYTES + estimate_size(&self.fields) + loose;
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

    /// All the fields (every entry in the tree) and the metadata.
    pub fn into_parts(mut self) -> (Value, EventMetadata) {
        self.materialize();
        (self.fields, self.meta)
    }

    /// A copy holding only the fields at `paths` (those the event has) and the same metadata,
    /// for a consumer that reads nothing else and passes no event on.
    pub fn project(&self, paths: &[OwnedValuePath]) -> Event {
        let mut copy = Event::from_parts(Value::Object(ObjectMap::new()), self.meta.clone());
        for path in paths {
            if let Some(value) = self.get(path) {
                copy.insert(path, value.clone());
            }
        }
        copy.recompute_size();
        copy
    }

    pub fn from_parts(fields: Value, meta: EventMetadata) -> Self {
        let mut event = Self { fields: Value::Null, loose: Default::default(), shared: None, meta };
        event.set_fields(fields);
        event
    }
}

/// An event's fields serialized as one object, in key order: its own entries and the shared
/// ones it does not shadow ([`Event::top_level`]).
pub struct FieldsView<'a>(&'a Event);

impl Serialize for FieldsView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let event = self.0;
        if event.shared.is_none() && event.loose.iter().all(Option::is_none) {
            return event.fields.serialize(serializer);
        }
        let entries = event.top_level_entries();
        let mut map = serializer.serialize_map(Some(entries.len()))?;
        for (k, v) in entries {
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

/// Copies the entries of `base` that `own` lacks into it, objects merged at every depth;
/// returns the estimated size added.
fn merge_under(own: &mut ObjectMap, base: &ObjectMap) -> usize {
    let mut added = 0;
    for (key, value) in base {
        match (own.get_mut(key.as_str()), value) {
            (None, _) => {
                added += key.len() + estimate_size(value) + ALLOCATION_BYTES;
                own.insert(key.clone(), value.clone());
            }
            (Some(Value::Object(inner)), Value::Object(base_inner)) => {
                added += merge_under(inner, base_inner);
            }
            (Some(_), _) => {}
        }
    }
    added
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
            map_nodes_bytes(map.len())
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

/// Estimated bytes of the nodes of a map with `entries` entries (an empty map allocates
/// none).
pub fn map_nodes_bytes(entries: usize) -> usize {
    MAP_NODE_BYTES * entries.div_ceil(MAP_NODE_SLOTS)
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
        let mut o = owned.clone();
        o.materialize();
        assert_eq!(m.fields(), o.fields());
        assert_eq!(o.size(), owned.materialized_size());
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
            assert_eq!(serde_json::to_string(&e.view()).unwrap(), expected, "{path}");
        }
        event.insert(&parse_path("a[1]").unwrap(), Value::from(1));
        assert_eq!(
            serde_json::to_string(&event.view()).unwrap(),
            r#"{"a":[null,1],"message":"hi"}"#
        );
    }

    /// A line event (message and timestamp beside the tree, host shared) and the same event
    /// with every field in its own tree.
    fn line_and_owned() -> (Event, Event) {
        let now = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z").unwrap().to_utc();
        let mut host = ObjectMap::new();
        host.insert("name".into(), Value::from("h1"));
        let mut map = ObjectMap::new();
        map.insert("host".into(), Value::Object(host));
        let line = Event::line(Bytes::from("a line"), now).with_shared(&SharedFields::new(map));
        let owned = Event::from_value(Value::from_iter([
            ("message".to_string(), Value::Bytes(Bytes::from("a line"))),
            ("@timestamp".to_string(), Value::Timestamp(now)),
            ("host".to_string(), Value::from_iter([("name".to_string(), Value::from("h1"))])),
        ]));
        (line, owned)
    }

    #[test]
    fn a_lines_message_and_timestamp_read_as_its_fields_without_a_tree() {
        let (line, owned) = line_and_owned();
        assert!(line.as_map().unwrap().is_empty(), "the line's own tree holds nothing");
        assert_eq!(json(&line), json(&owned));
        assert_eq!(
            json(&line),
            r#"{"@timestamp":"2026-12-03T10:00:00Z","host":{"name":"h1"},"message":"a line"}"#
        );
        for path in ["message", "@timestamp", "host.name", "message.x", "nothing"] {
            let p = parse_path(path).unwrap();
            assert_eq!(line.get(&p), owned.get(&p), "{path}");
        }
        assert_eq!(line.get_top("message"), owned.get_top("message"));
        assert_eq!(line.message(), owned.message());
        assert_eq!(line.timestamp(), owned.timestamp());
        assert_eq!(line.top_level_len(), 3);
        assert_eq!(
            line.top_level().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["@timestamp", "host", "message"]
        );
        // The estimate counts what is held: no map node until the fields move into a tree.
        assert!(line.size() < EVENT_OVERHEAD_BYTES + 32, "{}", line.size());
        let mut moved = line.clone();
        moved.materialize();
        assert_eq!(moved.size(), line.materialized_size());
        assert_eq!(json(&moved), json(&owned));
        assert!(moved.as_map().unwrap().contains_key("message"));
        let mut whole = owned.clone();
        whole.recompute_size();
        // Moving the fields in accounts for the node and keys the tree now holds (the
        // message's bytes are a slice of a read buffer: their length, not an allocation).
        assert!(
            moved.size() + ALLOCATION_BYTES >= whole.size(),
            "{} {}",
            moved.size(),
            whole.size()
        );
    }

    #[test]
    fn removing_a_lines_message_leaves_no_shared_message_behind() {
        let mut map = ObjectMap::new();
        map.insert("message".into(), Value::from("shared"));
        map.insert("service".into(), Value::from("s"));
        let shared = SharedFields::new(map);
        let mut line = Event::line(Bytes::from("a line"), Utc::now()).with_shared(&shared);
        assert_eq!(line.message(), Some(&Bytes::from("a line")));
        let removed = line.remove(&parse_path("message").unwrap());
        assert_eq!(removed, Some(Value::Bytes(Bytes::from("a line"))));
        assert_eq!(line.get(&parse_path("message").unwrap()), None);
        assert_eq!(line.get(&parse_path("service").unwrap()), Some(&Value::from("s")));
        assert!(!json(&line).contains("message"), "{}", json(&line));
        assert_eq!(line.top_level_len(), 2);
    }

    #[test]
    fn changes_to_a_lines_fields_act_as_on_its_own_tree() {
        let (line, owned) = line_and_owned();
        type Change = Box<dyn Fn(&mut Event)>;
        let changes: Vec<(&str, Change)> = vec![
            ("replace message", Box::new(|e| e.insert_key("message", Value::from("other")))),
            (
                "insert under message",
                Box::new(|e| {
                    e.insert(&parse_path("message.inner").unwrap(), Value::from(1));
                }),
            ),
            (
                "remove timestamp",
                Box::new(|e| {
                    e.remove(&parse_path("@timestamp").unwrap());
                }),
            ),
            (
                "remove message",
                Box::new(|e| {
                    assert_eq!(
                        e.remove(&parse_path("message").unwrap()),
                        Some(Value::Bytes(Bytes::from("a line")))
                    );
                }),
            ),
            (
                "a parser's fields, then remove message",
                Box::new(|e| {
                    e.own_map_mut().insert("level".into(), Value::from("warn"));
                    e.remove(&parse_path("message").unwrap());
                }),
            ),
            (
                "remove message the tree shadows",
                Box::new(|e| {
                    e.own_map_mut().insert("message".into(), Value::from("parsed"));
                    assert_eq!(
                        e.remove(&parse_path("message").unwrap()),
                        Some(Value::from("parsed"))
                    );
                }),
            ),
            (
                "insert beside",
                Box::new(|e| {
                    e.insert(&parse_path("service.name").unwrap(), Value::from("s"));
                }),
            ),
            ("add a key", Box::new(|e| e.insert_key("level", Value::from("info")))),
            (
                "remove through the root",
                Box::new(|e| {
                    e.as_map_mut().remove("message");
                }),
            ),
            (
                "replace through own map",
                Box::new(|e| {
                    e.own_map_mut().insert("@timestamp".into(), Value::from("t"));
                }),
            ),
            (
                "a parser's fields, then changes",
                Box::new(|e| {
                    let root = e.own_map_mut();
                    root.insert("message".into(), Value::from("parsed"));
                    root.insert("level".into(), Value::from("warn"));
                    e.insert_key("message", Value::from("again"));
                    e.remove(&parse_path("@timestamp").unwrap());
                }),
            ),
            (
                "vrl-like",
                Box::new(|e| {
                    if let Value::Object(m) = e.fields_mut() {
                        m.remove("message");
                        m.insert("msg".into(), Value::from("m"));
                    }
                }),
            ),
            ("set all", Box::new(|e| e.set_fields(Value::from("only")))),
        ];
        for (what, change) in changes {
            let (mut a, mut b) = (line.clone(), owned.clone());
            change(&mut a);
            change(&mut b);
            assert_eq!(json(&a), json(&b), "{what}");
            assert_eq!(a.top_level_len(), b.top_level_len(), "{what}");
            assert_eq!(a.message(), b.message(), "{what}");
            assert_eq!(a.timestamp(), b.timestamp(), "{what}");
            let (fa, _) = a.into_parts();
            let (fb, _) = b.into_parts();
            assert_eq!(fa, fb, "{what}");
        }
    }
}
