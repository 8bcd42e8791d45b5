//! One syslog message to one event, with `syslog_loose` (the parser Vector uses) for RFC 5424
//! and RFC 3164, tried in that order.
//!
//! Fields, with Elastic Common Schema names:
//!
//! | field | from |
//! |---|---|
//! | `message` | MSG; the whole raw message when it does not parse |
//! | `@timestamp` | TIMESTAMP in UTC; when weir received it if the message has none |
//! | `host.name` | HOSTNAME; the sender's IP address when the message has none |
//! | `log.syslog.facility.code`, `.name` | PRI (`16`, `local0`) |
//! | `log.syslog.severity.code`, `.name` | PRI (`3`, `err`) |
//! | `log.syslog.hostname`, `.appname`, `.procid`, `.msgid` | the header fields, when present |
//! | `log.syslog.version` | the RFC 5424 VERSION |
//! | `log.syslog.structured_data` | SD-ID to its parameters (a repeated name gives an array) |
//! | `source.ip`, `source.port` | the sender's address |
//! | `error.message` | why the message did not parse, or what its framing lost |
//!
//! RFC 3164 timestamps have neither year nor zone. The year is the current one, or the
//! previous one when the date would otherwise lie more than a month ahead (a December message
//! read in January). The zone is `timezone` from the configuration, else the machine's.
//!
//! Invariant: every message becomes exactly one event; bytes that are not UTF-8 are parsed
//! as lossy text, and a message that does not parse keeps its raw bytes.

use std::net::SocketAddr;
use std::ops::Range;

use bytes::Bytes;
use chrono::{DateTime, Datelike, Local, Utc};
use syslog_loose::{IncompleteDate, Message, ProcId, SyslogFacility, SyslogSeverity, Variant};
use vrl::value::{KeyString, ObjectMap, Value};

use crate::event::{ALLOCATION_BYTES, DeferredFields, Event, SharedFields, map_nodes_bytes};

/// The zone of RFC 3164 timestamps.
#[derive(Debug, Clone, Copy)]
pub enum Zone {
    /// The machine's local zone.
    Local,
    /// An IANA zone from the configuration.
    Named(chrono_tz::Tz),
}

impl Zone {
    /// `None` or `"local"` is the machine's zone; anything else must be an IANA name.
    pub fn parse(name: Option<&str>) -> Result<Self, String> {
        match name {
            None | Some("local") => Ok(Self::Local),
            Some(n) => n.parse::<chrono_tz::Tz>().map(Self::Named).map_err(|_| {
                format!(
                    "unknown time zone `{n}` (use an IANA name such as `Europe/Berlin`, or `local`)"
                )
            }),
        }
    }
}

/// The year of an RFC 3164 date, which has none: this year, unless the date would then be
/// more than a month in the future.
fn infer_year((month, ..): IncompleteDate, now: DateTime<Utc>) -> i32 {
    if month > now.month() + 1 { now.year() - 1 } else { now.year() }
}

fn parse_text(text: &str, zone: Zone, now: DateTime<Utc>) -> Option<Message<&str>> {
    let year = move |d: IncompleteDate| infer_year(d, now);
    match zone {
        Zone::Local => syslog_loose::parse_message_with_year_exact_tz::<_, Local>(
            text,
            year,
            Some(Local),
            Variant::Either,
        ),
        Zone::Named(tz) => {
            syslog_loose::parse_message_with_year_exact_tz(text, year, Some(tz), Variant::Either)
        }
    }
    .ok()
}

fn bytes(s: &str) -> Value {
    Value::Bytes(Bytes::copy_from_slice(s.as_bytes()))
}

/// Where a field's text lies in the raw message; `None` when it does not (the message was not
/// valid UTF-8, so the parser read a copy).
fn span(raw: &[u8], s: &str) -> Option<Range<usize>> {
    let at = (s.as_ptr() as usize).checked_sub(raw.as_ptr() as usize)?;
    let end = at.checked_add(s.len())?;
    (end <= raw.len()).then_some(at..end)
}

/// A field's text as bytes: a slice of the raw message when the text lies in it, a copy
/// otherwise.
fn slice(raw: &Bytes, s: &str) -> Value {
    match span(raw, s) {
        Some(r) => Value::Bytes(raw.slice(r)),
        None => bytes(s),
    }
}

/// A small map built by inserts (collecting sorts and bulk-builds, which costs more for the
/// two or three entries these have).
fn object<const N: usize>(pairs: [(&'static str, Value); N]) -> Value {
    let mut map = ObjectMap::new();
    for (k, v) in pairs {
        map.insert(KeyString::from(k), v);
    }
    Value::Object(map)
}

/// Adds `source.ip` and `source.port`.
fn insert_peer(map: &mut ObjectMap, peer: Option<SocketAddr>) {
    if let Some(p) = peer {
        map.insert(
            KeyString::from("source"),
            object([
                ("ip", bytes(&p.ip().to_string())),
                ("port", Value::from(i64::from(p.port()))),
            ]),
        );
    }
}

/// Builds the event of one message. `problem` is a framing problem to record in
/// `error.message` (the message was cut, say). Returns the event and whether it parsed.
///
/// A parsed message's `log.syslog` and `source` trees are deferred ([`Header`]): built
/// when first read, from the raw message the event holds anyway.
pub fn to_event(
    raw: Bytes,
    peer: Option<SocketAddr>,
    received: DateTime<Utc>,
    zone: Zone,
    problem: Option<String>,
) -> (Event, bool) {
    let text = crate::utf8::lossy(&raw);
    let mut map = ObjectMap::new();
    let header = match parse_text(&text, zone, received) {
        Some(m) => {
            insert_message(&mut map, &m, &raw, peer, received);
            Some((header_size(&m, raw.len(), peer.is_some()), Compact::of(&m, &raw)))
        }
        None => {
            map.insert(KeyString::from("message"), Value::Bytes(raw.clone()));
            map.insert(KeyString::from("@timestamp"), Value::Timestamp(received));
            if let Some(p) = peer {
                map.insert(KeyString::from("host"), object([("name", bytes(&p.ip().to_string()))]));
            }
            insert_peer(&mut map, peer);
            None
        }
    };
    let parsed = header.is_some();
    let error = match (parsed, problem) {
        (true, None) => None,
        (true, Some(p)) => Some(p),
        (false, None) => Some("not a syslog message (neither RFC 5424 nor RFC 3164)".to_string()),
        (false, Some(p)) => {
            Some(format!("{p}; not a syslog message (neither RFC 5424 nor RFC 3164)"))
        }
    };
    if let Some(e) = error {
        map.insert(KeyString::from("error"), object([("message", Value::from(e))]));
    }
    let mut event = Event::from_value(Value::Object(map));
    // The parsed fields are slices of the raw text: count the raw size once more as a bound.
    event.grow(raw.len());
    drop(text);
    if let Some((size, compact)) = header {
        event.grow(size);
        let header = Header { raw, peer, received, zone, compact };
        event = event.with_shared(&SharedFields::deferred(header));
    }
    (event, parsed)
}

/// The eager fields of a parsed message: `message`, `@timestamp`, `host.name`.
fn insert_message(
    map: &mut ObjectMap,
    m: &Message<&str>,
    raw: &Bytes,
    peer: Option<SocketAddr>,
    received: DateTime<Utc>,
) {
    map.insert(KeyString::from("message"), slice(raw, m.msg));
    let ts = m.timestamp.map_or(received, |t| t.with_timezone(&Utc));
    map.insert(KeyString::from("@timestamp"), Value::Timestamp(ts));
    let host = match (m.hostname, peer) {
        (Some(h), _) => Some(slice(raw, h)),
        (None, Some(p)) => Some(bytes(&p.ip().to_string())),
        (None, None) => None,
    };
    if let Some(h) = host {
        map.insert(KeyString::from("host"), object([("name", h)]));
    }
}

/// A parsed message's `log.syslog` and `source` fields, kept as the raw message (which the
/// event's `message` slices hold anyway), the sender and the header's fields as spans of the
/// raw message, and built when first read: building and freeing these six maps and ~17 keys
/// per message is most of the work of shipping syslog to a sink that never reads them (Loki
/// writing the message alone).
#[derive(Debug)]
struct Header {
    raw: Bytes,
    peer: Option<SocketAddr>,
    received: DateTime<Utc>,
    zone: Zone,
    /// The header's fields, unless the message was not UTF-8: then the message is parsed
    /// again when the fields are built.
    compact: Option<Compact>,
}

impl DeferredFields for Header {
    fn has_key(&self, key: &str) -> bool {
        key == "log" || (key == "source" && self.peer.is_some())
    }

    fn build(&self) -> ObjectMap {
        let text = |r: &Range<usize>| Value::Bytes(self.raw.slice(r.clone()));
        let compact =
            (self.compact.as_ref()).and_then(|c| Some((c, c.structured_data(&self.raw)?)));
        let syslog = match compact {
            Some((compact, sd)) => syslog_fields(compact.fields.as_values(text), &sd),
            None => {
                let text = crate::utf8::lossy(&self.raw);
                // The message parsed once with the same inputs; should a second parse differ
                // (the machine's zone changed in between and the date fell into a gap),
                // `log` still exists, as promised, with an empty `syslog`.
                match parse_text(&text, self.zone, self.received) {
                    Some(m) => {
                        let fields = HeaderFields::of(&m).as_values(|s| slice(&self.raw, s));
                        syslog_fields(fields, &m.structured_data)
                    }
                    None => ObjectMap::new(),
                }
            }
        };
        let mut map = ObjectMap::new();
        map.insert(KeyString::from("log"), object([("syslog", Value::Object(syslog))]));
        insert_peer(&mut map, self.peer);
        map
    }
}

/// The header fields of a message, its text fields as `T` (borrowed text, spans of the raw
/// message, or values).
#[derive(Debug)]
struct HeaderFields<T> {
    facility: Option<SyslogFacility>,
    severity: Option<SyslogSeverity>,
    hostname: Option<T>,
    appname: Option<T>,
    procid: Option<ProcIdField<T>>,
    msgid: Option<T>,
    version: Option<u32>,
}

#[derive(Debug)]
enum ProcIdField<T> {
    Pid(i32),
    Name(T),
}

impl<'a> HeaderFields<&'a str> {
    fn of(m: &Message<&'a str>) -> Self {
        Self {
            facility: m.facility,
            severity: m.severity,
            hostname: m.hostname,
            appname: m.appname,
            procid: match &m.procid {
                Some(ProcId::PID(pid)) => Some(ProcIdField::Pid(*pid)),
                Some(ProcId::Name(name)) => Some(ProcIdField::Name(*name)),
                None => None,
            },
            msgid: m.msgid,
            version: match m.protocol {
                syslog_loose::Protocol::RFC5424(v) => Some(v),
                syslog_loose::Protocol::RFC3164 => None,
            },
        }
    }
}

impl<T> HeaderFields<T> {
    /// The same fields with each text converted by `f`; `None` as soon as one conversion is.
    fn try_map<U>(&self, mut f: impl FnMut(&T) -> Option<U>) -> Option<HeaderFields<U>> {
        // `Some(None)` for an absent field, `None` when the conversion failed.
        fn opt<T, U>(t: &Option<T>, f: &mut impl FnMut(&T) -> Option<U>) -> Option<Option<U>> {
            match t {
                None => Some(None),
                Some(t) => f(t).map(Some),
            }
        }
        Some(HeaderFields {
            facility: self.facility,
            severity: self.severity,
            hostname: opt(&self.hostname, &mut f)?,
            appname: opt(&self.appname, &mut f)?,
            msgid: opt(&self.msgid, &mut f)?,
            procid: match &self.procid {
                Some(ProcIdField::Pid(pid)) => Some(ProcIdField::Pid(*pid)),
                Some(ProcIdField::Name(name)) => Some(ProcIdField::Name(f(name)?)),
                None => None,
            },
            version: self.version,
        })
    }

    fn as_values(&self, mut f: impl FnMut(&T) -> Value) -> HeaderFields<Value> {
        match self.try_map(|t| Some(f(t))) {
            Some(values) => values,
            None => unreachable!("every conversion gave a value"),
        }
    }
}

/// A parsed header kept as spans of the raw message.
#[derive(Debug)]
struct Compact {
    fields: HeaderFields<Range<usize>>,
    /// Each structured data element's id and its parameters' names and raw (still escaped)
    /// values.
    structured_data: Vec<SdSpans>,
}

type SdSpans = (Range<usize>, Vec<(Range<usize>, Range<usize>)>);

impl Compact {
    /// `None` when a field does not lie in `raw` (the message was not UTF-8).
    fn of(m: &Message<&str>, raw: &Bytes) -> Option<Self> {
        let span = |s: &&str| span(raw, s);
        let structured_data = (m.structured_data.iter())
            .map(|e| {
                let params = e.params.iter().map(|(n, v)| Some((span(n)?, span(v)?)));
                Some((span(&e.id)?, params.collect::<Option<Vec<_>>>()?))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self { fields: HeaderFields::of(m).try_map(span)?, structured_data })
    }

    /// The structured data as the parser gave it, borrowing from `raw`; `None` should a span
    /// not be text (it cannot: each was taken from the parser's text).
    fn structured_data<'a>(
        &self,
        raw: &'a [u8],
    ) -> Option<Vec<syslog_loose::StructuredElement<&'a str>>> {
        let text = |r: &Range<usize>| std::str::from_utf8(raw.get(r.clone())?).ok();
        (self.structured_data.iter())
            .map(|(id, params)| {
                let params = params.iter().map(|(n, v)| Some((text(n)?, text(v)?)));
                let params = params.collect::<Option<Vec<_>>>()?;
                Some(syslog_loose::StructuredElement { id: text(id)?, params })
            })
            .collect()
    }
}

/// An upper bound of the size estimate ([`crate::event::estimate_size`]) of the header's
/// built fields, from the parse at hand: at most six maps of at most nine entries, keys of
/// at most 15 bytes but those of structured data, the text fields slices of the raw message.
fn header_size(m: &Message<&str>, raw_len: usize, peer: bool) -> usize {
    const KEY: usize = 15 + ALLOCATION_BYTES;
    // log, syslog, facility, severity; their 14 keys; 9 strings (names, fields, numbers
    // formatted to text of at most 20 bytes).
    let mut size = 4 * map_nodes_bytes(9) + 14 * KEY + 9 * (20 + ALLOCATION_BYTES) + raw_len;
    if !m.structured_data.is_empty() {
        size += map_nodes_bytes(m.structured_data.len());
        for element in &m.structured_data {
            // The element's key and map; each parameter's key, value and array slot (the raw
            // value, read without `params()`, which unescapes into a new string, is at least
            // as long as the unescaped one).
            size += element.id.len() + ALLOCATION_BYTES;
            size += map_nodes_bytes(element.params.len());
            for (name, value) in &element.params {
                size += name.len() + value.len() + 3 * ALLOCATION_BYTES;
                size += std::mem::size_of::<Value>();
            }
        }
    }
    if peer {
        // source, ip, port; the address as text.
        size += map_nodes_bytes(2) + 3 * KEY + 39 + ALLOCATION_BYTES;
    }
    size
}

/// The `log.syslog` object of a parsed message.
fn syslog_fields(
    h: HeaderFields<Value>,
    structured_data: &[syslog_loose::StructuredElement<&str>],
) -> ObjectMap {
    let mut syslog = ObjectMap::new();
    let mut put = |k: &str, v: Value| {
        syslog.insert(KeyString::from(k), v);
    };
    if let Some(f) = h.facility {
        let name = Value::Bytes(Bytes::from_static(f.as_str().as_bytes()));
        put("facility", object([("code", Value::from(f as i64)), ("name", name)]));
    }
    if let Some(s) = h.severity {
        let name = Value::Bytes(Bytes::from_static(s.as_str().as_bytes()));
        put("severity", object([("code", Value::from(s as i64)), ("name", name)]));
    }
    if let Some(v) = h.hostname {
        put("hostname", v);
    }
    if let Some(v) = h.appname {
        put("appname", v);
    }
    match h.procid {
        Some(ProcIdField::Pid(pid)) => put("procid", bytes(&pid.to_string())),
        Some(ProcIdField::Name(v)) => put("procid", v),
        None => {}
    }
    if let Some(v) = h.msgid {
        put("msgid", v);
    }
    if let Some(v) = h.version {
        put("version", bytes(&v.to_string()));
    }
    if !structured_data.is_empty() {
        let mut sd = ObjectMap::new();
        for element in structured_data {
            let mut params = ObjectMap::new();
            for (name, value) in element.params() {
                let key = KeyString::from(*name);
                match params.remove(&key) {
                    None => params.insert(key, Value::from(value)),
                    Some(Value::Array(mut values)) => {
                        values.push(Value::from(value));
                        params.insert(key, Value::Array(values))
                    }
                    Some(first) => {
                        params.insert(key, Value::Array(vec![first, Value::from(value)]))
                    }
                };
            }
            sd.insert(KeyString::from(element.id), Value::Object(params));
        }
        put("structured_data", Value::Object(sd));
    }
    syslog
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(event: &Event) -> serde_json::Value {
        serde_json::to_value(event.view()).unwrap()
    }

    fn peer() -> Option<SocketAddr> {
        Some("10.1.2.3:40000".parse().unwrap())
    }

    fn now() -> DateTime<Utc> {
        "2026-03-15T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn rfc5424_keeps_every_header_field_and_structured_data() {
        let raw = r#"<165>1 2026-03-14T22:14:15.003+01:00 gpu-7 torchserve 8710 ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][meta r="a" r="b"] model loaded"#;
        let (event, ok) = to_event(Bytes::from(raw), peer(), now(), Zone::Local, None);
        assert!(ok);
        assert_eq!(
            json(&event),
            serde_json::json!({
                "message": "model loaded",
                "@timestamp": "2026-03-14T21:14:15.003Z",
                "host": {"name": "gpu-7"},
                "log": {"syslog": {
                    "facility": {"code": 20, "name": "local4"},
                    "severity": {"code": 5, "name": "notice"},
                    "hostname": "gpu-7",
                    "appname": "torchserve",
                    "procid": "8710",
                    "msgid": "ID47",
                    "version": "1",
                    "structured_data": {
                        "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"},
                        "meta": {"r": ["a", "b"]}
                    }
                }},
                "source": {"ip": "10.1.2.3", "port": 40000}
            })
        );
    }

    #[test]
    fn the_header_is_built_when_read_and_moves_into_the_tree_on_a_change() {
        let raw = r#"<165>1 2026-03-14T22:14:15.003+01:00 gpu-7 torchserve 8710 ID47 [meta r="a"] model loaded"#;
        let (mut event, _) = to_event(Bytes::from(raw), peer(), now(), Zone::Local, None);
        let path = |p: &str| crate::event::parse_path(p).unwrap();
        // Not in the event's own tree, yet read as its fields.
        let own = event.as_map().unwrap();
        assert!(
            own.contains_key("host") && !own.contains_key("log") && !own.contains_key("source")
        );
        assert_eq!(event.get(&path("log.syslog.appname")), Some(&Value::from("torchserve")));
        assert_eq!(event.get(&path("source.port")), Some(&Value::from(40000)));
        assert_eq!(event.get_top("source").and_then(|s| s.as_object()).map(|s| s.len()), Some(2));
        let before = json(&event);
        // A change copies the built fields into the tree and keeps everything else.
        event.insert(&path("log.syslog.appname"), Value::from("triton"));
        let own = event.as_map().unwrap();
        assert!(own.contains_key("log") && own.contains_key("source"));
        let mut expected = before;
        expected["log"]["syslog"]["appname"] = "triton".into();
        assert_eq!(json(&event), expected);
    }

    #[test]
    fn the_compact_header_builds_what_a_second_parse_builds() {
        let header = |raw: &[u8], compact: bool| {
            let raw = Bytes::copy_from_slice(raw);
            // As `to_event` parses: the text borrows the raw bytes when they are UTF-8.
            let kept = {
                let text = crate::utf8::lossy(&raw);
                let m = parse_text(&text, Zone::Local, now()).unwrap();
                Compact::of(&m, &raw).filter(|_| compact)
            };
            let compacted = kept.is_some();
            let h = Header { raw, peer: peer(), received: now(), zone: Zone::Local, compact: kept };
            (h, compacted)
        };
        for raw in [
            &b"<165>1 2026-03-14T22:14:15.003+01:00 gpu-7 torchserve 8710 ID47 - model loaded"[..],
            b"<165>1 2026-03-14T22:14:15Z gpu-7 torchserve worker-3 - - named procid",
            b"<34>Oct 11 22:14:15 mymachine su[231]: 'su root' failed for lonvick",
            b"<13>1 - - - - - - nothing but the message",
            br#"<165>1 2026-03-14T22:14:15Z h a 1 ID [exampleSDID@32473 iut="3" eventSource="App\"lication\]"][meta r="a" r="b"] sd"#,
        ] {
            let (compact, compacted) = header(raw, true);
            assert!(compacted, "{raw:?} is UTF-8: kept compact");
            let (parsed_again, _) = header(raw, false);
            assert_eq!(compact.build(), parsed_again.build(), "{raw:?}");
        }
        // Text that is not UTF-8 is parsed again.
        assert!(!header(b"<13>1 - h\xe9 a - - - caf\xe9", true).1);
    }

    #[test]
    fn the_header_size_bounds_its_built_fields() {
        let messages = [
            r#"<165>1 2026-03-14T22:14:15.003+01:00 gpu-7 torchserve 8710 ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][meta r="a" r="b"] model loaded"#,
            r#"<13>1 2026-03-14T22:14:15Z h a 18446744073709551615 m [a x="1" b="2" c="3" d="4" e="5" f="6" g="7" h="8" i="9" j="10" k="11" l="12"] many"#,
            "<34>Oct 11 22:14:15 mymachine su[231]: 'su root' failed for lonvick",
            "<13>1 - - - - - - short",
        ];
        for raw in messages {
            for peer in
                [peer(), Some("[2001:db8::1234:5678:9abc:def0]:65535".parse().unwrap()), None]
            {
                let raw = Bytes::from(raw);
                let text = crate::utf8::lossy(&raw).into_owned();
                let m = parse_text(&text, Zone::Local, now()).unwrap();
                let bound = header_size(&m, raw.len(), peer.is_some());
                let compact = Compact::of(&m, &raw);
                let header =
                    Header { raw: raw.clone(), peer, received: now(), zone: Zone::Local, compact };
                // The entries' estimate (their container is the event's own root).
                let built: usize = (header.build().iter())
                    .map(|(k, v)| k.len() + ALLOCATION_BYTES + crate::event::estimate_size(v))
                    .sum();
                assert!(built <= bound, "{raw:?}: built {built} > bound {bound}");
                // A bound, not a multiple: within twice the built size.
                assert!(bound <= 2 * built, "{raw:?}: bound {bound} > 2 x built {built}");
            }
        }
    }

    #[test]
    fn rfc3164_infers_year_and_zone() {
        let raw = "<34>Oct 11 22:14:15 mymachine su[231]: 'su root' failed for lonvick";
        let berlin = Zone::parse(Some("Europe/Berlin")).unwrap();
        let (event, ok) = to_event(Bytes::from(raw), peer(), now(), berlin, None);
        assert!(ok);
        let v = json(&event);
        // October lies more than a month after March: last year's October, Berlin summer time.
        assert_eq!(v["@timestamp"], "2025-10-11T20:14:15Z");
        assert_eq!(v["message"], "'su root' failed for lonvick");
        assert_eq!(v["host"]["name"], "mymachine");
        assert_eq!(v["log"]["syslog"]["appname"], "su");
        assert_eq!(v["log"]["syslog"]["procid"], "231");
        assert_eq!(v["log"]["syslog"]["facility"]["code"], 4);
        assert_eq!(v["log"]["syslog"]["severity"]["code"], 2);

        let (event, _) = to_event(
            Bytes::from("<13>Mar 16 01:00:00 h app: next day"),
            peer(),
            now(),
            Zone::parse(Some("UTC")).unwrap(),
            None,
        );
        assert_eq!(json(&event)["@timestamp"], "2026-03-16T01:00:00Z");
    }

    #[test]
    fn unparseable_bytes_keep_the_raw_message_and_say_why() {
        let raw = Bytes::from_static(b"\xff\xfe not syslog at all");
        let (event, ok) = to_event(raw.clone(), peer(), now(), Zone::Local, None);
        assert!(!ok);
        assert_eq!(event.message(), Some(&raw));
        let v = json(&event);
        assert_eq!(v["host"]["name"], "10.1.2.3");
        assert_eq!(v["source"]["ip"], "10.1.2.3");
        assert_eq!(v["@timestamp"], "2026-03-15T12:00:00Z");
        assert!(v["error"]["message"].as_str().unwrap().contains("not a syslog message"));
    }

    #[test]
    fn a_framing_problem_is_recorded_on_a_parsed_event() {
        let (event, ok) = to_event(
            Bytes::from("<13>1 - - app - - - cut"),
            None,
            now(),
            Zone::Local,
            Some("cut short".into()),
        );
        assert!(ok);
        let v = json(&event);
        assert_eq!(v["error"]["message"], "cut short");
        assert_eq!(v["@timestamp"], "2026-03-15T12:00:00Z");
        assert!(v.get("host").is_none());
    }

    #[test]
    fn unknown_zone_is_a_config_error() {
        assert!(Zone::parse(Some("Mars/Olympus")).unwrap_err().contains("Mars/Olympus"));
        assert!(matches!(Zone::parse(Some("local")), Ok(Zone::Local)));
    }
}
