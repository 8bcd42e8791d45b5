//! The exact binary form of events in disk-buffer records.
//!
//! weir writes this codec itself rather than going through serde: VRL's `Value` serializes
//! timestamps and regexes as plain strings and `Bytes` and `String` alike, so a serde round
//! trip (with any format crate) would hand the sink events of other types than the ones
//! written. A mirror type plus a serde format crate would cost one extra copy of every event;
//! the format below is ten tags and varints, and is tested by round trips of every variant.
//!
//! ```text
//! record payload := version:u8 (= 1)  count:u32 (little endian)  event*
//! event          := size:varint  value            (size = the event's estimated bytes)
//! value          := 0                             null
//!                 | 1 | 2                         false | true
//!                 | 3 zigzag:varint               integer
//!                 | 4 bits:u64 (little endian)    float (never NaN)
//!                 | 5 len:varint bytes            bytes
//!                 | 6 len:varint utf8             string
//!                 | 7 secs:zigzag nanos:varint    timestamp (UTC)
//!                 | 8 len:varint utf8             regex (its pattern)
//!                 | 9 n:varint value*n            array
//!                 | 10 n:varint (len:varint utf8 value)*n   object
//! ```
//!
//! Invariant: decoding never panics and never allocates more than the input can fill, whatever
//! the bytes: a record that passed its checksum may still be from an incompatible writer or a
//! bug, and is then reported as corrupt, not trusted.

use std::sync::Arc;

use bytes::{BufMut, Bytes};
use chrono::{DateTime, Utc};
use ordered_float::NotNan;
use vrl::value::{KeyString, ObjectMap, Value, ValueRegex};

use crate::event::{Event, EventMetadata};

/// The version byte every record payload starts with.
pub const FORMAT_VERSION: u8 = 1;

/// Deepest nesting accepted when decoding (events deeper than this cannot come from weir's
/// parsers; the limit keeps a corrupt record from exhausting the stack).
const MAX_DEPTH: usize = 128;

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const INTEGER: u8 = 3;
const FLOAT: u8 = 4;
const BYTES: u8 = 5;
const STRING: u8 = 6;
const TIMESTAMP: u8 = 7;
const REGEX: u8 = 8;
const ARRAY: u8 = 9;
const OBJECT: u8 = 10;

/// Bytes of the payload header: version and event count.
pub const HEADER_BYTES: usize = 5;

/// Appends the record payload of `events` to `out`.
pub fn encode_events(events: &[Event], out: &mut Vec<u8>) {
    encode_header(events.len() as u32, out);
    for e in events {
        encode_event(e, out);
    }
}

/// Appends a payload header announcing `count` events.
pub fn encode_header(count: u32, out: &mut Vec<u8>) {
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&count.to_le_bytes());
}

/// Appends one event (its size estimate and its fields).
pub fn encode_event(event: &Event, out: &mut Vec<u8>) {
    put_varint(out, event.materialized_size() as u64);
    // Shared fields are written as the event's own: the record stands alone.
    let entries = event.top_level_entries();
    encode_object(entries.len(), entries.into_iter(), out);
}

/// Appends an object of `len` entries.
fn encode_object<'a>(
    len: usize,
    entries: impl Iterator<Item = (&'a KeyString, &'a Value)>,
    out: &mut Vec<u8>,
) {
    out.push(OBJECT);
    put_varint(out, len as u64);
    for (k, v) in entries {
        put_bytes(out, k.as_bytes());
        encode_value(v, out);
    }
}

/// Appends one value.
pub fn encode_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(NULL),
        Value::Boolean(false) => out.push(FALSE),
        Value::Boolean(true) => out.push(TRUE),
        Value::Integer(i) => {
            out.push(INTEGER);
            put_varint(out, zigzag(*i));
        }
        Value::Float(f) => {
            out.push(FLOAT);
            out.put_u64_le(f.into_inner().to_bits());
        }
        Value::Bytes(b) => {
            out.push(BYTES);
            put_bytes(out, b);
        }
        Value::String(s) => {
            out.push(STRING);
            put_bytes(out, s.as_bytes());
        }
        Value::Timestamp(ts) => {
            out.push(TIMESTAMP);
            put_varint(out, zigzag(ts.timestamp()));
            put_varint(out, u64::from(ts.timestamp_subsec_nanos()));
        }
        Value::Regex(r) => {
            out.push(REGEX);
            put_bytes(out, r.as_str().as_bytes());
        }
        Value::Array(items) => {
            out.push(ARRAY);
            put_varint(out, items.len() as u64);
            for v in items {
                encode_value(v, out);
            }
        }
        Value::Object(map) => encode_object(map.len(), map.iter(), out),
    }
}

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The number of events a payload announces (read without decoding them).
pub fn event_count(payload: &[u8]) -> Result<u64, DecodeError> {
    let mut r = Reader { buf: payload, pos: 0 };
    r.version()?;
    r.count()
}

/// Decodes a record payload into events without acknowledgement handles. Strings are slices
/// of `payload` (no copy).
pub fn decode_events(payload: &Bytes) -> Result<Vec<Event>, DecodeError> {
    let mut r = Reader { buf: payload, pos: 0 };
    r.version()?;
    let count = r.count()?;
    // Every event takes at least two bytes: never reserve more than the payload can hold.
    let mut events = Vec::with_capacity((count as usize).min(payload.len() / 2));
    for _ in 0..count {
        let size = r.varint()?;
        let value = r.value(payload, 0)?;
        if !matches!(value, Value::Object(_)) {
            return Err(DecodeError("an event's root is not an object".into()));
        }
        let mut event = Event::from_parts(value, EventMetadata::default());
        event.set_size(usize::try_from(size).unwrap_or(usize::MAX));
        events.push(event);
    }
    if r.pos != payload.len() {
        return Err(DecodeError(format!("{} bytes after the last event", payload.len() - r.pos)));
    }
    Ok(events)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn err<T>(&self, what: &str) -> Result<T, DecodeError> {
        Err(DecodeError(format!("{what} at byte {}", self.pos)))
    }

    fn version(&mut self) -> Result<(), DecodeError> {
        match self.u8()? {
            FORMAT_VERSION => Ok(()),
            v => Err(DecodeError(format!("unknown record format version {v}"))),
        }
    }

    fn count(&mut self) -> Result<u64, DecodeError> {
        let Some(raw) = self.buf.get(self.pos..self.pos + 4) else {
            return self.err("unexpected end");
        };
        self.pos += 4;
        Ok(u64::from(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])))
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        match self.buf.get(self.pos) {
            Some(b) => {
                self.pos += 1;
                Ok(*b)
            }
            None => self.err("unexpected end"),
        }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        self.err("varint longer than 10 bytes")
    }

    /// A length-prefixed range of the buffer.
    fn span(&mut self) -> Result<std::ops::Range<usize>, DecodeError> {
        let len = self.varint()?;
        let start = self.pos;
        match usize::try_from(len).ok().and_then(|l| start.checked_add(l)) {
            Some(end) if end <= self.buf.len() => {
                self.pos = end;
                Ok(start..end)
            }
            _ => self.err("length beyond the end"),
        }
    }

    fn utf8(&mut self) -> Result<&str, DecodeError> {
        let span = self.span()?;
        let at = span.start;
        std::str::from_utf8(&self.buf[span])
            .map_err(|_| DecodeError(format!("invalid UTF-8 at byte {at}")))
    }

    fn value(&mut self, whole: &Bytes, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return self.err("nesting too deep");
        }
        Ok(match self.u8()? {
            NULL => Value::Null,
            FALSE => Value::Boolean(false),
            TRUE => Value::Boolean(true),
            INTEGER => Value::Integer(unzigzag(self.varint()?)),
            FLOAT => {
                let end = self.pos + 8;
                let Some(raw) = self.buf.get(self.pos..end) else {
                    return self.err("unexpected end");
                };
                let mut le = [0u8; 8];
                le.copy_from_slice(raw);
                self.pos = end;
                match NotNan::new(f64::from_bits(u64::from_le_bytes(le))) {
                    Ok(f) => Value::Float(f),
                    Err(_) => return self.err("NaN float"),
                }
            }
            BYTES => Value::Bytes(whole.slice(self.span()?)),
            STRING => {
                let at = self.pos;
                match Value::from_utf8_or_bytes(whole.slice(self.span()?)) {
                    v @ Value::String(_) => v,
                    _ => return Err(DecodeError(format!("invalid UTF-8 at byte {at}"))),
                }
            }
            TIMESTAMP => {
                let secs = unzigzag(self.varint()?);
                let nanos = u32::try_from(self.varint()?).unwrap_or(u32::MAX);
                match DateTime::<Utc>::from_timestamp(secs, nanos) {
                    Some(ts) => Value::Timestamp(ts),
                    None => return self.err("timestamp out of range"),
                }
            }
            REGEX => {
                let pattern = self.utf8()?;
                match regex::Regex::new(pattern) {
                    Ok(r) => Value::Regex(ValueRegex::new(Arc::new(r))),
                    Err(_) => return self.err("invalid regex"),
                }
            }
            ARRAY => {
                let n = self.varint()?;
                let mut items = Vec::with_capacity(self.capacity(n));
                for _ in 0..n {
                    items.push(self.value(whole, depth + 1)?);
                }
                Value::Array(items)
            }
            OBJECT => {
                let n = self.varint()?;
                // Keys were written in the map's order: collecting builds the tree in one pass
                // instead of one search per insertion.
                let mut entries = Vec::with_capacity(self.capacity(n));
                for _ in 0..n {
                    let key = KeyString::from(self.utf8()?);
                    let v = self.value(whole, depth + 1)?;
                    entries.push((key, v));
                }
                Value::Object(entries.into_iter().collect::<ObjectMap>())
            }
            tag => return self.err(&format!("unknown value tag {tag}")),
        })
    }

    /// A capacity for `n` items that the rest of the buffer could actually fill.
    fn capacity(&self, n: u64) -> usize {
        (n as usize).min(self.buf.len().saturating_sub(self.pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        let mut inner = ObjectMap::new();
        inner.insert("name".into(), Value::from("resnet-18"));
        inner.insert("raw".into(), Value::Bytes(Bytes::from_static(b"\xff\x00bin")));
        let mut map = ObjectMap::new();
        map.insert("message".into(), Value::from("GET /predict 200"));
        map.insert("service".into(), Value::Object(inner));
        map.insert(
            "@timestamp".into(),
            Value::Timestamp(DateTime::from_timestamp(1_795_000_000, 123_456_789).unwrap()),
        );
        map.insert(
            "before_epoch".into(),
            Value::Timestamp(DateTime::from_timestamp(-5, 7).unwrap()),
        );
        map.insert("latency_ms".into(), Value::Float(NotNan::new(12.5).unwrap()));
        map.insert("neg".into(), Value::Integer(-42));
        map.insert("max".into(), Value::Integer(i64::MAX));
        map.insert("min".into(), Value::Integer(i64::MIN));
        map.insert("ok".into(), Value::Boolean(true));
        map.insert("no".into(), Value::Boolean(false));
        map.insert("nothing".into(), Value::Null);
        map.insert(
            "re".into(),
            Value::Regex(ValueRegex::new(Arc::new(regex::Regex::new("^a+b$").unwrap()))),
        );
        map.insert(
            "list".into(),
            Value::Array(vec![Value::Integer(1), Value::from("two"), Value::Array(vec![])]),
        );
        Value::Object(map)
    }

    #[test]
    fn every_variant_round_trips_with_its_type_and_size() {
        let mut a = Event::from_value(sample());
        a.grow(1234);
        let b = Event::from_message("second");
        let mut buf = Vec::new();
        encode_events(&[a.clone(), b.clone()], &mut buf);
        assert_eq!(event_count(&buf).unwrap(), 2);
        let back = decode_events(&Bytes::from(buf)).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].fields(), a.fields());
        assert_eq!(back[0].size(), a.size());
        // A line's message, held beside its tree, is written as one of its fields.
        let mut whole_b = b.clone();
        whole_b.materialize();
        assert_eq!(back[1].fields(), whole_b.fields());
        assert_eq!(back[1].size(), whole_b.size());
        let m = back[0].as_map().unwrap();
        // The types survive, not just the values' text.
        assert!(matches!(m["@timestamp"], Value::Timestamp(_)));
        assert!(matches!(m["message"], Value::String(_)));
        assert!(matches!(m["service"].as_object().unwrap()["raw"], Value::Bytes(_)));
        assert!(matches!(&m["re"], Value::Regex(r) if r.as_str() == "^a+b$"));
    }

    #[test]
    fn shared_fields_are_written_as_the_events_own() {
        let mut shared = ObjectMap::new();
        shared.insert("host".into(), Value::Object(ObjectMap::from([("name".into(), "h".into())])));
        shared.insert("message".into(), Value::from("shadowed"));
        let shared = crate::event::SharedFields::new(shared);
        let lazy = Event::from_message("own").with_shared(&shared);
        let mut buf = Vec::new();
        encode_events(std::slice::from_ref(&lazy), &mut buf);
        let back = decode_events(&Bytes::from(buf)).unwrap();
        let mut whole = lazy.clone();
        whole.materialize();
        assert_eq!(back[0].fields(), whole.fields());
        assert_eq!(back[0].size(), whole.size());
        assert_eq!(back[0].message().map(|m| &m[..]), Some(&b"own"[..]));
    }

    #[test]
    fn deferred_fields_are_built_and_written_as_the_events_own() {
        use crate::sources::syslog::parse::{Zone, to_event};
        let raw = r#"<165>1 2026-03-14T22:14:15Z gpu-7 torchserve 8710 ID47 [meta r="a"] loaded"#;
        let peer = Some("10.1.2.3:40000".parse().unwrap());
        let (event, _) = to_event(Bytes::from(raw), peer, chrono::Utc::now(), Zone::Local, None);
        let mut buf = Vec::new();
        encode_events(std::slice::from_ref(&event), &mut buf);
        let back = decode_events(&Bytes::from(buf)).unwrap();
        let mut whole = event.clone();
        whole.materialize();
        assert!(whole.fields().as_object().unwrap().contains_key("log"));
        assert_eq!(back[0].fields(), whole.fields());
        assert_eq!(back[0].size(), whole.size());
    }

    #[test]
    fn bad_bytes_are_errors_never_panics() {
        let mut buf = Vec::new();
        encode_events(&[Event::from_value(sample())], &mut buf);
        // Every truncation and every single-byte change either decodes or errs.
        for cut in 0..buf.len() {
            let _ = decode_events(&Bytes::copy_from_slice(&buf[..cut]));
        }
        for i in 0..buf.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = buf.clone();
                b[i] ^= flip;
                let _ = decode_events(&Bytes::from(b));
            }
        }
        assert!(decode_events(&Bytes::from_static(&[9])).is_err(), "unknown version");
        // A count of 2^32-1 events in a 5-byte payload does not reserve memory for them.
        let mut huge = Vec::new();
        encode_header(u32::MAX, &mut huge);
        assert!(decode_events(&Bytes::from(huge)).is_err());
        // Nesting beyond the limit is refused rather than recursed into.
        let mut deep = Vec::new();
        encode_header(1, &mut deep);
        deep.push(0);
        for _ in 0..10_000 {
            deep.extend([ARRAY, 1]);
        }
        deep.push(NULL);
        assert!(decode_events(&Bytes::from(deep)).is_err());
        // A root that is not an object.
        assert!(
            decode_events(&Bytes::from_static(&[FORMAT_VERSION, 1, 0, 0, 0, 0, NULL])).is_err()
        );
    }
}
