//! What the `socket` sink writes: an event as JSON, as its bare message, or as an RFC 5424
//! syslog message; and the frame around it (newline or RFC 6587 octet counting).
//!
//! Pure functions of the event, tested byte for byte.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Deserialize;
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use crate::error::ConfigIssue;
use crate::event::{Event, parse_path};
use crate::sinks::util::encoding::{Codec, EncodingConfig};

/// `encoding` of the socket sink.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketEncoding {
    /// `json` (one JSON object per event, the default), `text` (the bare `message`) or
    /// `syslog` (RFC 5424, see `syslog`).
    #[serde(default)]
    pub codec: SocketCodec,
    /// Options of the `syslog` codec.
    #[serde(default)]
    pub syslog: SyslogOptions,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketCodec {
    /// One JSON object per event (the default).
    #[default]
    Json,
    /// The bare `message`.
    Text,
    /// RFC 5424.
    Syslog,
}

/// `framing`: how messages are delimited on a stream (TCP, Unix). UDP sends one datagram per
/// event, unframed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// A line feed after each message (a message's own line feeds are not escaped: use
    /// octet counting for multi-line messages).
    #[default]
    Newline,
    /// RFC 6587 octet counting: `LEN SP MSG`.
    OctetCounting,
}

/// `encoding.syslog`: where the RFC 5424 header and structured data come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogOptions {
    /// The facility: a name (`user`, `daemon`, `local0` ...) or its number. Default `user`.
    #[serde(default = "default_facility")]
    pub facility: String,
    /// A field whose value (name or number) is the facility, when present and valid.
    #[serde(default)]
    pub facility_field: Option<String>,
    /// The field the severity is read from: a level name (`error`, `warn`, `info` ...) or a
    /// number 0-7. Default `log.level`.
    #[serde(default = "default_severity_field")]
    pub severity_field: String,
    /// The severity of an event whose field is missing or unknown. Default `info`.
    #[serde(default = "default_severity")]
    pub severity: String,
    /// The field of APP-NAME. Default `service.name`.
    #[serde(default = "default_app_name_field")]
    pub app_name_field: String,
    /// APP-NAME of an event without that field. Default `weir`.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// The field of HOSTNAME (default `host.name`; this machine's name when missing).
    #[serde(default = "default_hostname_field")]
    pub hostname_field: String,
    /// The field of PROCID. Default `process.pid`.
    #[serde(default = "default_proc_id_field")]
    pub proc_id_field: String,
    /// The field of MSGID; none by default (`-`).
    #[serde(default)]
    pub msg_id_field: Option<String>,
    /// Structured data: SD-ID = { PARAM-NAME = field path }. An element whose fields are all
    /// missing is left out.
    #[serde(default)]
    pub structured_data: BTreeMap<String, BTreeMap<String, String>>,
}

impl Default for SyslogOptions {
    fn default() -> Self {
        // Deserializing an empty table applies every field's default.
        toml_edit::de::from_str("").unwrap_or_else(|_| unreachable!("all fields have defaults"))
    }
}

fn default_facility() -> String {
    "user".into()
}
fn default_severity_field() -> String {
    "log.level".into()
}
fn default_severity() -> String {
    "info".into()
}
fn default_app_name_field() -> String {
    "service.name".into()
}
fn default_app_name() -> String {
    "weir".into()
}
fn default_hostname_field() -> String {
    "host.name".into()
}
fn default_proc_id_field() -> String {
    "process.pid".into()
}

const FACILITIES: &[&str] = &[
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// A facility name or number (0-23).
pub fn facility_code(s: &str) -> Option<u8> {
    let s = s.trim().to_ascii_lowercase();
    match s.parse::<u8>() {
        Ok(n) if n < 24 => Some(n),
        Ok(_) => None,
        Err(_) => FACILITIES.iter().position(|f| *f == s).map(|i| i as u8),
    }
}

/// A severity name (as logging libraries and syslog write them) or number (0-7).
pub fn severity_code(s: &str) -> Option<u8> {
    let s = s.trim().to_ascii_lowercase();
    if let Ok(n) = s.parse::<u8>() {
        return (n < 8).then_some(n);
    }
    Some(match s.as_str() {
        "emerg" | "emergency" | "panic" => 0,
        "alert" => 1,
        "crit" | "critical" | "fatal" => 2,
        "err" | "error" => 3,
        "warn" | "warning" => 4,
        "notice" => 5,
        "info" | "informational" => 6,
        "debug" | "trace" => 7,
        _ => return None,
    })
}

/// The syslog options compiled: paths parsed, names turned into codes.
#[derive(Debug, Clone)]
pub struct Syslog {
    facility: u8,
    facility_field: Option<OwnedValuePath>,
    severity_field: OwnedValuePath,
    severity: u8,
    app_name_field: OwnedValuePath,
    app_name: String,
    hostname_field: OwnedValuePath,
    hostname: String,
    proc_id_field: OwnedValuePath,
    msg_id_field: Option<OwnedValuePath>,
    structured_data: Vec<(String, Vec<(String, OwnedValuePath)>)>,
}

impl SyslogOptions {
    /// Checks and compiles; every problem at once, each naming its field.
    pub fn compile(&self) -> Result<Syslog, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut path = |field: &str, p: &str| match parse_path(p) {
            Ok(p) => Some(p),
            Err(e) => {
                issues.push(ConfigIssue::field(&format!("encoding.syslog.{field}"), e));
                None
            }
        };
        let facility_field = self.facility_field.as_deref().map(|p| path("facility_field", p));
        let severity_field = path("severity_field", &self.severity_field);
        let app_name_field = path("app_name_field", &self.app_name_field);
        let hostname_field = path("hostname_field", &self.hostname_field);
        let proc_id_field = path("proc_id_field", &self.proc_id_field);
        let msg_id_field = self.msg_id_field.as_deref().map(|p| path("msg_id_field", p));
        let mut structured_data = Vec::new();
        for (id, params) in &self.structured_data {
            let mut ps = Vec::new();
            for (name, field) in params {
                if let Some(p) = path("structured_data", field) {
                    ps.push((sd_name(name), p));
                }
            }
            structured_data.push((sd_name(id), ps));
        }
        let facility = facility_code(&self.facility);
        if facility.is_none() {
            issues.push(ConfigIssue::field(
                "encoding.syslog.facility",
                format!("`{}` is not a facility name or a number 0-23", self.facility),
            ));
        }
        let severity = severity_code(&self.severity);
        if severity.is_none() {
            issues.push(ConfigIssue::field(
                "encoding.syslog.severity",
                format!("`{}` is not a severity name or a number 0-7", self.severity),
            ));
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        let unwrap = |p: Option<OwnedValuePath>| p.unwrap_or_else(|| unreachable!("checked"));
        Ok(Syslog {
            facility: facility.unwrap_or(1),
            facility_field: facility_field.map(unwrap),
            severity_field: unwrap(severity_field),
            severity: severity.unwrap_or(6),
            app_name_field: unwrap(app_name_field),
            app_name: header_field(&self.app_name, 48),
            hostname_field: unwrap(hostname_field),
            hostname: header_field(
                &String::from_utf8_lossy(&crate::sources::util::host_name()),
                255,
            ),
            proc_id_field: unwrap(proc_id_field),
            msg_id_field: msg_id_field.map(unwrap),
            structured_data,
        })
    }
}

/// A header field as RFC 5424 allows it: printable US-ASCII without spaces, at most `max`
/// characters; anything else becomes `_`, and an empty field is the NILVALUE `-`.
fn header_field(s: &str, max: usize) -> String {
    let out: String =
        s.chars().take(max).map(|c| if c.is_ascii_graphic() { c } else { '_' }).collect();
    if out.is_empty() { "-".into() } else { out }
}

/// An SD-ID or PARAM-NAME: as a header field, without `=`, `]` and `"`, at most 32.
fn sd_name(s: &str) -> String {
    header_field(s, 32).replace(['=', ']', '"'], "_")
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::String(_) => v.to_str_lossy().map(|s| s.into_owned()),
        v => Some(v.to_string_lossy().into_owned()),
    }
}

impl Syslog {
    /// Appends the RFC 5424 message of `event` (no frame).
    pub fn encode(&self, event: &Event, now: chrono::DateTime<chrono::Utc>, buf: &mut Vec<u8>) {
        let field = |p: &OwnedValuePath| event.get(p).and_then(text_of);
        let facility = self
            .facility_field
            .as_ref()
            .and_then(field)
            .and_then(|f| facility_code(&f))
            .unwrap_or(self.facility);
        let severity =
            field(&self.severity_field).and_then(|s| severity_code(&s)).unwrap_or(self.severity);
        let time = event.timestamp().unwrap_or(now);
        let header = |p: &OwnedValuePath, max: usize| field(p).map(|v| header_field(&v, max));
        let hostname = header(&self.hostname_field, 255).unwrap_or_else(|| self.hostname.clone());
        let app = header(&self.app_name_field, 48).unwrap_or_else(|| self.app_name.clone());
        let proc_id = header(&self.proc_id_field, 128).unwrap_or_else(|| "-".into());
        let msg_id = self.msg_id_field.as_ref().and_then(|p| header(p, 32));
        let _ = write!(
            buf,
            "<{}>1 {} {hostname} {app} {proc_id} {} ",
            u16::from(facility) * 8 + u16::from(severity),
            time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            msg_id.as_deref().unwrap_or("-"),
        );
        let before = buf.len();
        for (id, params) in &self.structured_data {
            let values: Vec<(&String, String)> =
                params.iter().filter_map(|(n, p)| field(p).map(|v| (n, v))).collect();
            if values.is_empty() {
                continue;
            }
            buf.push(b'[');
            buf.extend_from_slice(id.as_bytes());
            for (name, value) in values {
                let _ = write!(buf, " {name}=\"");
                for c in value.chars() {
                    if matches!(c, '"' | '\\' | ']') {
                        buf.push(b'\\');
                    }
                    let mut utf8 = [0; 4];
                    buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
                buf.push(b'"');
            }
            buf.push(b']');
        }
        if buf.len() == before {
            buf.push(b'-');
        }
        let message = event
            .message()
            .map(|m| m.to_vec())
            .or_else(|| event.get_top("message").and_then(text_of).map(String::into_bytes));
        if let Some(m) = message.filter(|m| !m.is_empty()) {
            buf.push(b' ');
            buf.extend_from_slice(&m);
        }
    }
}

/// The compiled encoder of the sink.
#[derive(Debug, Clone)]
pub enum Encoder {
    Json,
    Text,
    Syslog(Box<Syslog>),
}

impl Encoder {
    pub fn new(config: &SocketEncoding) -> Result<Self, Vec<ConfigIssue>> {
        Ok(match config.codec {
            SocketCodec::Json => Self::Json,
            SocketCodec::Text => Self::Text,
            SocketCodec::Syslog => Self::Syslog(Box::new(config.syslog.compile()?)),
        })
    }

    /// Appends the message of `event`, without a frame.
    pub fn encode(&self, event: &Event, now: chrono::DateTime<chrono::Utc>, buf: &mut Vec<u8>) {
        let line = |codec, buf: &mut Vec<u8>| {
            EncodingConfig { codec }.encode_line(event, buf);
            buf.pop();
        };
        match self {
            Self::Json => line(Codec::Json, buf),
            Self::Text => line(Codec::Text, buf),
            Self::Syslog(s) => s.encode(event, now, buf),
        }
    }
}

/// Appends `message` in its frame.
pub fn frame(framing: Framing, message: &[u8], buf: &mut Vec<u8>) {
    match framing {
        Framing::Newline => {
            buf.extend_from_slice(message);
            buf.push(b'\n');
        }
        Framing::OctetCounting => {
            let _ = write!(buf, "{} ", message.len());
            buf.extend_from_slice(message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        let mut e = Event::from_message("model loaded\nin 3 s");
        let ts = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:00:00.25Z").unwrap();
        e.insert_key("@timestamp", Value::Timestamp(ts.to_utc()));
        let fields = serde_json::json!({
            "log": {"level": "WARNING"},
            "service": {"name": "triton server"},
            "host": {"name": "gpu-1"},
            "process": {"pid": 4242},
            "model": {"name": "resnet]50", "version": "3\"b"},
        });
        for (k, v) in fields.as_object().unwrap() {
            e.insert_key(k, serde_json::from_value::<Value>(v.clone()).unwrap());
        }
        e
    }

    fn syslog(toml: &str) -> Syslog {
        toml_edit::de::from_str::<SyslogOptions>(toml).unwrap().compile().unwrap()
    }

    #[test]
    fn rfc5424_with_header_fields_and_structured_data() {
        let s = syslog(
            "facility = \"local3\"\nmsg_id_field = \"model.version\"\n\
             structured_data = { \"model@32473\" = { name = \"model.name\", version = \"model.version\", gone = \"nope\" }, \"empty@1\" = { a = \"nope\" } }",
        );
        let mut buf = Vec::new();
        s.encode(&event(), chrono::Utc::now(), &mut buf);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "<156>1 2026-12-07T10:00:00.250000Z gpu-1 triton_server 4242 3\"b \
             [model@32473 name=\"resnet\\]50\" version=\"3\\\"b\"] model loaded\nin 3 s"
        );
    }

    #[test]
    fn defaults_and_fallbacks() {
        let s = syslog("");
        let mut buf = Vec::new();
        let e = Event::from_message("hello");
        s.encode(&e, chrono::Utc::now(), &mut buf);
        let text = String::from_utf8(buf).unwrap();
        // user.info, this host, app `weir`, no procid, msgid or structured data.
        assert!(text.starts_with("<14>1 "), "{text}");
        assert!(text.ends_with(" weir - - - hello"), "{text}");
        assert_eq!(severity_code("7"), Some(7));
        assert_eq!(severity_code("8"), None);
        assert_eq!(facility_code("LOCAL7"), Some(23));
        let bad = toml_edit::de::from_str::<SyslogOptions>("facility = \"x\"\nseverity = \"loud\"")
            .unwrap()
            .compile()
            .unwrap_err();
        assert_eq!(bad.len(), 2);
    }

    #[test]
    fn frames() {
        let mut buf = Vec::new();
        frame(Framing::OctetCounting, "héllo".as_bytes(), &mut buf);
        frame(Framing::Newline, b"x", &mut buf);
        assert_eq!(buf, "6 héllox\n".as_bytes());
    }
}
