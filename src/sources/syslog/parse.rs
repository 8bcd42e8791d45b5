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

use bytes::Bytes;
use chrono::{DateTime, Datelike, Local, Utc};
use syslog_loose::{IncompleteDate, Message, ProcId, Variant};
use vrl::value::{KeyString, ObjectMap, Value};

use crate::event::Event;

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

/// A field's text as bytes: a slice of the raw message when the text lies in it (the message
/// was valid UTF-8, so the parser's fields borrow from it), a copy otherwise.
fn slice(raw: &Bytes, s: &str) -> Value {
    let (start, end) = (raw.as_ptr() as usize, raw.as_ptr() as usize + raw.len());
    let at = s.as_ptr() as usize;
    if at >= start && at + s.len() <= end {
        Value::Bytes(raw.slice_ref(s.as_bytes()))
    } else {
        bytes(s)
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
pub fn to_event(
    raw: Bytes,
    peer: Option<SocketAddr>,
    received: DateTime<Utc>,
    zone: Zone,
    problem: Option<String>,
) -> (Event, bool) {
    let text = String::from_utf8_lossy(&raw);
    let mut map = ObjectMap::new();
    let parsed = match parse_text(&text, zone, received) {
        Some(m) => {
            insert_message(&mut map, &m, &raw, peer, received);
            true
        }
        None => {
            map.insert(KeyString::from("message"), Value::Bytes(raw.clone()));
            map.insert(KeyString::from("@timestamp"), Value::Timestamp(received));
            if let Some(p) = peer {
                map.insert(KeyString::from("host"), object([("name", bytes(&p.ip().to_string()))]));
            }
            false
        }
    };
    insert_peer(&mut map, peer);
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
    (event, parsed)
}

fn insert_message(
    map: &mut ObjectMap,
    m: &Message<&str>,
    raw: &Bytes,
    peer: Option<SocketAddr>,
    received: DateTime<Utc>,
) {
    let field = |s: &str| slice(raw, s);
    map.insert(KeyString::from("message"), field(m.msg));
    let ts = m.timestamp.map_or(received, |t| t.with_timezone(&Utc));
    map.insert(KeyString::from("@timestamp"), Value::Timestamp(ts));
    let host = match (m.hostname, peer) {
        (Some(h), _) => Some(field(h)),
        (None, Some(p)) => Some(bytes(&p.ip().to_string())),
        (None, None) => None,
    };
    if let Some(h) = host {
        map.insert(KeyString::from("host"), object([("name", h)]));
    }

    let mut syslog = ObjectMap::new();
    let mut put = |k: &str, v: Value| {
        syslog.insert(KeyString::from(k), v);
    };
    if let Some(f) = m.facility {
        let name = Value::Bytes(Bytes::from_static(f.as_str().as_bytes()));
        put("facility", object([("code", Value::from(f as i64)), ("name", name)]));
    }
    if let Some(s) = m.severity {
        let name = Value::Bytes(Bytes::from_static(s.as_str().as_bytes()));
        put("severity", object([("code", Value::from(s as i64)), ("name", name)]));
    }
    if let Some(h) = m.hostname {
        put("hostname", field(h));
    }
    if let Some(a) = m.appname {
        put("appname", field(a));
    }
    match &m.procid {
        Some(ProcId::PID(pid)) => put("procid", bytes(&pid.to_string())),
        Some(ProcId::Name(name)) => put("procid", field(name)),
        None => {}
    }
    if let Some(id) = m.msgid {
        put("msgid", field(id));
    }
    if let syslog_loose::Protocol::RFC5424(v) = m.protocol {
        put("version", bytes(&v.to_string()));
    }
    if !m.structured_data.is_empty() {
        let mut sd = ObjectMap::new();
        for element in &m.structured_data {
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
    map.insert(KeyString::from("log"), object([("syslog", Value::Object(syslog))]));
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
