//! The dead-letter queue: where events go that a sink rejected for good (an Elasticsearch
//! mapping error, a Loki entry too far behind, an event without the field an index template
//! needs).
//!
//! ```toml
//! [dead_letter]
//! sink = "rejected_archive"   # optional: a configured sink instead of the default file
//! ```
//!
//! By default dead letters are appended to `data_dir/dead_letter/dead_letter-YYYY-MM-DD.jsonl`
//! (UTC date of the rejection), one JSON object per line, synced before the rejected events
//! are released. Each line says when, which sink, why, and what was refused:
//!
//! ```json
//! {"@timestamp":"2026-11-27T10:00:00.123Z",
//!  "error":{"type":"document_parsing_exception","message":"failed to parse field [latency] ..."},
//!  "event":{"original":"{\"latency\":\"fast\",\"message\":\"...\"}"},
//!  "message":"elasticsearch sink es rejected an event: document_parsing_exception",
//!  "weir":{"dead_letter":{"sink":"es","sink_type":"elasticsearch","destination":"logs-2026.11.27"}}}
//! ```
//!
//! `event.original` is what the sink tried to deliver (the Elasticsearch document, the Loki
//! line) as a string, so that a dead-letter destination never trips over the mapping problem
//! that caused the rejection. With `sink = "<id>"` the same events go to that sink's input
//! (a sink used only for this takes `inputs = []`); its own rejections are not sent to itself,
//! they are counted and logged.
//!
//! Every dead-lettered event is counted in `weir_dead_letter_events_total{component_id,
//! reason}` (the sink that rejected it).
//!
//! Invariant: a rejected event's acknowledgement handles travel with its dead letter, so its
//! source moves past it only once the dead-letter destination has it; if the destination
//! cannot take it, it is marked errored and read again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Deserialize;
use vrl::value::{KeyString, ObjectMap, Value};

use crate::channel::{BatchReceiver, BatchSender, Closed};
use crate::error::Task;
use crate::event::{Event, EventFinalizers, EventStatus};
use crate::files::write_all_in_pieces;
use crate::internal_events::RateLimit;
use crate::metrics::{ComponentMetrics, Labels};

/// The id under which the default dead-letter file writer runs (reserved).
pub const FILE_WRITER_ID: &str = "_dead_letter";

/// `[dead_letter]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// A configured sink to send dead letters to, instead of the default file.
    pub sink: Option<String>,
}

/// One event a sink rejected for good.
pub struct Rejected {
    /// The event's acknowledgement handles.
    pub finalizers: EventFinalizers,
    /// What the sink tried to deliver, as text.
    pub original: String,
    /// Where it was going (an index, a stream), when the sink knows.
    pub destination: Option<String>,
    /// A short machine reason (the destination's error type, or weir's own).
    pub reason: String,
    /// The destination's own words.
    pub detail: String,
}

fn family() -> &'static Family<Labels, Counter> {
    static F: OnceLock<Family<Labels, Counter>> = OnceLock::new();
    F.get_or_init(|| {
        let f = Family::default();
        crate::metrics::global().register(
            "dead_letter_events",
            "Events a sink rejected for good that reached the dead-letter destination, by reason",
            f.clone(),
        );
        f
    })
}

/// A sink's way to its dead-letter destination; cheap to clone.
#[derive(Clone)]
pub struct DeadLetter {
    inner: Arc<Inner>,
}

struct Inner {
    sink_id: String,
    sink_type: String,
    labels: crate::metrics::ComponentLabels,
    /// `None` for the dead-letter destination itself.
    destination: Option<BatchSender>,
    log: Mutex<RateLimit>,
}

impl DeadLetter {
    /// The handle of sink `metrics.labels.id`, sending to `destination`.
    pub fn new(metrics: &ComponentMetrics, destination: Option<BatchSender>) -> Self {
        let _ = family();
        Self {
            inner: Arc::new(Inner {
                sink_id: metrics.labels.id.clone(),
                sink_type: metrics.labels.type_name.clone(),
                labels: metrics.labels.clone(),
                destination,
                log: Mutex::new(RateLimit::default()),
            }),
        }
    }

    /// Registers the series of dead letters for `reason` at 0 (the sink may reject for it).
    pub fn expect(&self, reason: &str) {
        family().get_or_create_owned(&self.inner.labels.with("reason", reason));
    }

    /// Hands rejected events to the destination, waiting while it is full. Events that the
    /// destination cannot take are marked errored (read again by their sources).
    pub async fn send(&self, rejected: Vec<Rejected>) {
        if rejected.is_empty() {
            return;
        }
        let Some(tx) = &self.inner.destination else {
            // This sink is the dead-letter destination: its rejections stop here (the driver
            // has counted and logged them).
            for r in rejected {
                r.finalizers.update_status(EventStatus::Rejected);
            }
            return;
        };
        let now = Utc::now();
        let mut by_reason: HashMap<String, u64> = HashMap::new();
        let events: Vec<Event> = rejected
            .into_iter()
            .map(|r| {
                *by_reason.entry(r.reason.clone()).or_default() += 1;
                self.letter(r, now)
            })
            .collect();
        match tx.send(events).await {
            Ok(()) => {
                for (reason, n) in by_reason {
                    family().get_or_create(&self.inner.labels.with("reason", &reason)).inc_by(n);
                }
            }
            Err(Closed(lost)) => {
                for e in &lost {
                    e.update_status(EventStatus::Errored);
                }
                if let Some(suppressed) =
                    self.inner.log.lock().unwrap_or_else(|e| e.into_inner()).allow()
                {
                    tracing::error!(
                        component = %self.inner.sink_id,
                        events = lost.len(),
                        suppressed,
                        "the dead-letter destination has stopped; these rejected events will be \
                         read again after a restart"
                    );
                }
            }
        }
    }

    /// The dead-letter event of `r`, holding its acknowledgement handles.
    fn letter(&self, r: Rejected, now: DateTime<Utc>) -> Event {
        let mut error = ObjectMap::new();
        error.insert(KeyString::from("type"), Value::from(r.reason.as_str()));
        error.insert(KeyString::from("message"), Value::from(r.detail));
        let mut original = ObjectMap::new();
        original.insert(KeyString::from("original"), Value::from(r.original));
        let mut dl = ObjectMap::new();
        dl.insert(KeyString::from("sink"), Value::from(self.inner.sink_id.as_str()));
        dl.insert(KeyString::from("sink_type"), Value::from(self.inner.sink_type.as_str()));
        if let Some(d) = r.destination {
            dl.insert(KeyString::from("destination"), Value::from(d));
        }
        let mut weir = ObjectMap::new();
        weir.insert(KeyString::from("dead_letter"), Value::Object(dl));
        let mut root = ObjectMap::new();
        root.insert(KeyString::from("@timestamp"), Value::Timestamp(now));
        root.insert(KeyString::from("error"), Value::Object(error));
        root.insert(KeyString::from("event"), Value::Object(original));
        root.insert(
            KeyString::from("message"),
            Value::from(format!(
                "{} sink {} rejected an event: {}",
                self.inner.sink_type, self.inner.sink_id, r.reason
            )),
        );
        root.insert(KeyString::from("weir"), Value::Object(weir));
        let mut event = Event::from_value(Value::Object(root));
        *event.finalizers_mut() = r.finalizers;
        // Rejected, not delivered: sources that count outcomes see it for what it is. If the
        // destination fails, errored outranks it.
        event.update_status(EventStatus::Rejected);
        event
    }
}

/// The JSON text of an event's fields (what a sink that refused it before encoding tried to
/// send).
pub fn original_of(event: &Event) -> String {
    serde_json::to_string(&event.view()).unwrap_or_default()
}

/// The file a dead letter rejected at `at` goes to.
pub fn file_for(dir: &Path, at: DateTime<Utc>) -> PathBuf {
    dir.join(format!("dead_letter-{}.jsonl", at.format("%Y-%m-%d")))
}

/// The default destination: appends dead letters to daily files under `dir` as JSON lines,
/// synced before the events are released. A failed write marks them errored.
pub fn file_writer(dir: PathBuf, mut input: BatchReceiver, metrics: ComponentMetrics) -> Task {
    Box::pin(async move {
        let out = metrics.output("_default");
        let mut log = RateLimit::default();
        while let Some(mut events) = input.recv().await {
            while let Some(more) = input.try_recv() {
                events.extend(more);
                if events.len() >= 10_000 {
                    break;
                }
            }
            metrics.received(events.len(), crate::event::batch_size(&events));
            let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
            for e in &events {
                let at = e.timestamp().unwrap_or_else(Utc::now);
                let path = file_for(&dir, at);
                let i = match files.iter().position(|(p, _)| *p == path) {
                    Some(i) => i,
                    None => {
                        files.push((path, Vec::new()));
                        files.len() - 1
                    }
                };
                let buf = &mut files[i].1;
                // Serialising a VRL value into memory cannot fail.
                let _ = serde_json::to_writer(&mut *buf, &e.view());
                buf.push(b'\n');
            }
            let d = dir.clone();
            let bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
            let written = tokio::task::spawn_blocking(move || write_all(&d, &files)).await;
            match written {
                Ok(Ok(())) => out.sent(events.len(), bytes),
                Ok(Err(e)) => {
                    for ev in &events {
                        ev.update_status(EventStatus::Errored);
                    }
                    metrics.error(
                        crate::metrics::error_type::WRITE_FAILED,
                        crate::metrics::Stage::Sending,
                    );
                    if let Some(suppressed) = log.allow() {
                        tracing::error!(
                            dir = %dir.display(), error = %e, events = events.len(), suppressed,
                            "cannot write the dead-letter file; these rejected events will be \
                             read again after a restart"
                        );
                    }
                }
                Err(_) => {
                    for ev in &events {
                        ev.update_status(EventStatus::Errored);
                    }
                }
            }
        }
        Ok(())
    })
}

fn write_all(dir: &Path, files: &[(PathBuf, Vec<u8>)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (path, buf) in files {
        let f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        write_all_in_pieces(&f, buf)?;
        f.sync_data()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{WhenFull, channel};
    use crate::event::{BatchNotifier, BatchStatus};
    use crate::metrics::ComponentLabels;

    fn rejected(n: &BatchNotifier, reason: &str) -> Rejected {
        let mut e = Event::from_message("x").with_notifier(n);
        Rejected {
            finalizers: std::mem::take(e.finalizers_mut()),
            original: original_of(&e),
            destination: Some("logs".into()),
            reason: reason.into(),
            detail: "mapping said no".into(),
        }
    }

    #[tokio::test]
    async fn the_source_waits_for_the_dead_letter_file() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = ComponentMetrics::new(ComponentLabels::new("es_dl_test", "sink", "x"));
        let (tx, rx) = channel(1 << 20, WhenFull::Block, None, None);
        let dl = DeadLetter::new(&metrics, Some(tx));
        let (n, mut ack) = BatchNotifier::with_receiver();
        dl.send(vec![rejected(&n, "mapper_parsing_exception")]).await;
        drop((n, dl));
        assert!(ack.try_recv().is_err(), "acknowledged before the dead letter was written");
        let writer_metrics =
            ComponentMetrics::new(ComponentLabels::new(FILE_WRITER_ID, "sink", "dead_letter"));
        file_writer(dir.path().to_path_buf(), rx, writer_metrics).await.unwrap();
        assert_eq!(ack.await.unwrap(), BatchStatus::Rejected);
        let path = std::fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path();
        let text = std::fs::read_to_string(path).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["error"]["type"], "mapper_parsing_exception");
        assert_eq!(v["error"]["message"], "mapping said no");
        assert_eq!(v["weir"]["dead_letter"]["sink"], "es_dl_test");
        assert_eq!(v["weir"]["dead_letter"]["destination"], "logs");
        assert_eq!(v["event"]["original"], r#"{"message":"x"}"#);
        assert!(v["@timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[tokio::test]
    async fn a_failed_write_makes_the_source_read_again() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the directory should be: the writer cannot create it.
        let blocked = dir.path().join("not_a_dir");
        std::fs::write(&blocked, b"").unwrap();
        let metrics = ComponentMetrics::new(ComponentLabels::new("dl_fail_test", "sink", "x"));
        let (tx, rx) = channel(1 << 20, WhenFull::Block, None, None);
        let dl = DeadLetter::new(&metrics, Some(tx));
        let (n, ack) = BatchNotifier::with_receiver();
        dl.send(vec![rejected(&n, "r")]).await;
        drop((n, dl));
        file_writer(blocked, rx, metrics).await.unwrap();
        assert_eq!(ack.await.unwrap(), BatchStatus::Errored);
    }

    #[tokio::test]
    async fn without_a_destination_rejections_are_final() {
        let metrics = ComponentMetrics::new(ComponentLabels::new("dl_self_test", "sink", "x"));
        let dl = DeadLetter::new(&metrics, None);
        let (n, ack) = BatchNotifier::with_receiver();
        dl.send(vec![rejected(&n, "r")]).await;
        drop(n);
        assert_eq!(ack.await.unwrap(), BatchStatus::Rejected);
    }
}
