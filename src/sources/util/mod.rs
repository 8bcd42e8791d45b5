//! Pieces shared by sources: line framing, multi-line aggregation, host name, TLS, the HTTP
//! server, the connection series.

pub mod http_server;
pub mod lines;
pub mod listeners;
pub mod multiline;
pub mod tls;

use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::Labels;

use bytes::Bytes;

/// The machine's host name, read once (`host.name` on every event).
pub fn host_name() -> Bytes {
    static HOST: OnceLock<Bytes> = OnceLock::new();
    HOST.get_or_init(|| {
        let name = hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        Bytes::from(name)
    })
    .clone()
}

use std::sync::Arc;

use chrono::{DateTime, Utc};
use vrl::value::{KeyString, ObjectMap, Value};

use crate::event::{Event, SharedFields};
use multiline::Group;

/// The fields a line source has in common for all its lines: `host.name`, and for a file
/// `log.file.path`. Built once per source or file and shared by its events.
pub fn line_fields(host: &Bytes, file_path: Option<&str>) -> Arc<SharedFields> {
    let mut map = ObjectMap::new();
    let mut h = ObjectMap::new();
    h.insert(KeyString::from("name"), Value::Bytes(host.clone()));
    map.insert(KeyString::from("host"), Value::Object(h));
    if let Some(path) = file_path {
        let mut file = ObjectMap::new();
        file.insert(KeyString::from("path"), Value::Bytes(Bytes::from(path.to_owned())));
        let mut log = ObjectMap::new();
        log.insert(KeyString::from("file"), Value::Object(file));
        map.insert(KeyString::from("log"), Value::Object(log));
    }
    SharedFields::new(map)
}

/// The event of one line: `message`, `@timestamp` (when weir read it) and the source's
/// shared fields (see [`line_fields`]).
pub fn line_event(message: Bytes, now: DateTime<Utc>, fields: &Arc<SharedFields>) -> Event {
    Event::line(message, now).with_shared(fields)
}

/// The event of a line or multi-line message. One that was cut carries `error.message` and
/// `log.flags = ["truncated"]` (Filebeat's flag), so that it can be told apart and routed.
pub fn group_event<T>(
    group: Group<T>,
    now: DateTime<Utc>,
    fields: &Arc<SharedFields>,
    max_line_bytes: usize,
) -> Event {
    let mut event = line_event(group.bytes, now, fields);
    if group.truncated {
        let set = |e: &mut Event, path: &str, value: Value| {
            if let Ok(p) = crate::event::parse_path(path) {
                e.insert(&p, value);
            }
        };
        set(
            &mut event,
            "error.message",
            Value::from(format!(
                "line longer than max_line_bytes ({max_line_bytes}) was cut; the rest is not in                  this event"
            )),
        );
        set(&mut event, "log.flags", Value::Array(vec![Value::from("truncated")]));
    }
    event
}

/// Sleeps until `deadline`, or forever when there is none (for `select!` arms).
pub async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// `weir_component_connections_closed_total`, shared by the sources that accept connections.
pub(crate) fn closed_connections_family() -> &'static Family<Labels, Counter> {
    static FAMILY: OnceLock<Family<Labels, Counter>> = OnceLock::new();
    FAMILY.get_or_init(|| {
        let family = Family::<Labels, Counter>::default();
        crate::metrics::global().register(
            "component_connections_closed",
            "Connections a source closed on its own, by reason",
            family.clone(),
        );
        family
    })
}

/// `weir_component_open_connections`, shared by the sources that accept connections.
pub(crate) fn open_connections_family() -> &'static Family<Labels, Gauge> {
    static FAMILY: OnceLock<Family<Labels, Gauge>> = OnceLock::new();
    FAMILY.get_or_init(|| {
        let family = Family::<Labels, Gauge>::default();
        crate::metrics::global().register(
            "component_open_connections",
            "Connections a source is serving now",
            family.clone(),
        );
        family
    })
}
