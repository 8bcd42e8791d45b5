//! Pieces shared by sources: line framing, multi-line aggregation, host name, TLS.

pub mod lines;
pub mod multiline;
pub mod tls;

use std::sync::OnceLock;

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

use chrono::{DateTime, Utc};
use vrl::value::{KeyString, ObjectMap, Value};

use crate::event::Event;

/// The fields every line source gives an event: `message`, `@timestamp` (when weir read it)
/// and `host.name`.
pub fn line_event(message: Bytes, now: DateTime<Utc>, host: &Bytes) -> Event {
    let mut event = Event::from_message(message);
    let map = event.as_map_mut();
    map.insert(KeyString::from("@timestamp"), Value::Timestamp(now));
    let mut h = ObjectMap::new();
    h.insert(KeyString::from("name"), Value::Bytes(host.clone()));
    map.insert(KeyString::from("host"), Value::Object(h));
    event.recompute_size();
    event
}

/// Sleeps until `deadline`, or forever when there is none (for `select!` arms).
pub async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}
