//! Events to Loki entries: the stream's labels, the line, the timestamp and the structured
//! metadata, with Loki's label rules checked before anything is sent.
//!
//! Labels are templates (`{{ field }}`, or static text). A label name ending in `*` expands a
//! map: `"pod_*" = "{{ kubernetes.pod_labels }}"` gives one label per key, prefixed with
//! `pod_`. A label whose field is missing is left out. Names are checked against Loki's rules
//! (`[a-zA-Z_][a-zA-Z0-9_]*`, at most 15 per stream, values at most 2048 bytes): names from a
//! map are made valid (other characters become `_`); an event whose labels still break a rule
//! is rejected here, counted and logged, rather than refused by Loki for the whole stream.
//!
//! Cardinality guard: at most `max_streams` distinct label sets per hour. A label set beyond
//! that (a request id used as a label, say) goes to one capped stream, its static labels plus
//! `weir_cardinality_capped="true"`, and its dynamic labels travel as structured metadata, so
//! nothing is lost; a warning naming the label with the most distinct values is logged once.
//!
//! Invariant: encoding is a pure function of the event, the settings and the guard's state.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use crate::event::{Event, parse_path};
use crate::sinks::util::driver::Rejection;
use crate::template::Template;

/// Loki's default `max_label_names_per_series`.
pub const MAX_LABELS: usize = 15;
/// Loki's default `max_label_value_length`.
pub const MAX_LABEL_VALUE_BYTES: usize = 2048;
/// Loki's default `max_label_name_length`.
pub const MAX_LABEL_NAME_BYTES: usize = 1024;
/// The label marking the stream of events whose label sets were capped.
pub const CAPPED_LABEL: &str = "weir_cardinality_capped";
/// How long distinct label sets are counted before the count starts again.
const CARDINALITY_WINDOW: Duration = Duration::from_secs(3600);

/// A stream's label set: sorted pairs and their Prometheus text form `{a="b", c="d"}`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Stream {
    pub pairs: Vec<(String, String)>,
    pub text: String,
}

impl Stream {
    pub fn new(mut pairs: Vec<(String, String)>) -> Self {
        pairs.sort();
        let mut text = String::from("{");
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                text.push_str(", ");
            }
            text.push_str(k);
            text.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => text.push_str("\\\\"),
                    '"' => text.push_str("\\\""),
                    '\n' => text.push_str("\\n"),
                    '\r' => text.push_str("\\r"),
                    '\t' => text.push_str("\\t"),
                    c => text.push(c),
                }
            }
            text.push('"');
        }
        text.push('}');
        Self { pairs, text }
    }
}

/// One encoded entry.
#[derive(Debug, Clone)]
pub struct LokiEntry {
    pub stream: Arc<Stream>,
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    pub line: String,
    pub metadata: Vec<(String, String)>,
}

/// Whether a string is a valid Loki (Prometheus) label name.
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= MAX_LABEL_NAME_BYTES
}

/// A name made valid: other characters become `_`, a leading digit gets a `_` before it.
pub fn sanitize_label_name(name: &str) -> String {
    let mut out: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A label or metadata entry of the config.
#[derive(Debug, Clone)]
pub enum PairTemplate {
    /// `name = "template"`.
    One { name: String, template: Template },
    /// `"prefix*" = "{{ map_field }}"`.
    Expand { prefix: String, path: OwnedValuePath },
}

impl PairTemplate {
    /// Compiles one `name = value` entry of `labels` or `structured_metadata`.
    pub fn parse(name: &str, value: &str, what: &str) -> Result<Self, String> {
        if let Some(prefix) = name.strip_suffix('*') {
            let field = value
                .trim()
                .strip_prefix("{{")
                .and_then(|v| v.strip_suffix("}}"))
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .ok_or_else(|| {
                    format!(
                        "{what} `{name}` expands a map: its value must be one `{{{{ field }}}}`"
                    )
                })?;
            if !prefix.is_empty() && !valid_label_name(prefix) {
                return Err(format!("{what} prefix `{prefix}` is not a valid label name"));
            }
            return Ok(Self::Expand { prefix: prefix.to_string(), path: parse_path(field)? });
        }
        if !valid_label_name(name) {
            return Err(format!(
                "{what} name `{name}` is not valid in Loki: use letters, digits and `_`, not \
                 starting with a digit"
            ));
        }
        if name.starts_with("__") {
            return Err(format!("{what} name `{name}`: names starting with `__` are reserved"));
        }
        Ok(Self::One { name: name.to_string(), template: Template::parse(value)? })
    }

    fn is_static(&self) -> bool {
        matches!(self, Self::One { template, .. } if template.is_static())
    }

    /// Appends this entry's pairs for `event` to `out`.
    fn render(&self, event: &Event, now: DateTime<Utc>, out: &mut Vec<(String, String)>) {
        match self {
            Self::One { name, template } => {
                if let Ok(v) = template.render(event, now) {
                    out.push((name.clone(), v));
                }
            }
            Self::Expand { prefix, path } => {
                if let Some(Value::Object(map)) = event.get(path) {
                    for (k, v) in map {
                        let value = match v {
                            Value::Bytes(b) => crate::utf8::lossy(b).into_owned(),
                            Value::Null => continue,
                            other => other.to_string_lossy().into_owned(),
                        };
                        out.push((sanitize_label_name(&format!("{prefix}{k}")), value));
                    }
                }
            }
        }
    }

    /// The fields this entry reads (for `remove_label_fields`).
    fn fields(&self) -> Vec<OwnedValuePath> {
        match self {
            Self::One { template, .. } => template.field_paths(),
            Self::Expand { path, .. } => vec![path.clone()],
        }
    }
}

/// How the line is written.
#[derive(Debug, Clone)]
pub enum LineFormat {
    /// The event's fields as one JSON object.
    Json,
    /// One field as text.
    Text(OwnedValuePath, String),
}

/// Counts distinct label sets and caps them.
struct Guard {
    max_streams: usize,
    streams: HashMap<Vec<(String, String)>, Arc<Stream>>,
    window_start: Instant,
    /// Distinct values seen per label name (each set capped), to name the culprit.
    values: HashMap<String, HashSet<String>>,
    warned: bool,
    capped: Option<Arc<Stream>>,
}

/// The encoder of a Loki sink.
pub struct LokiEncoder {
    pub labels: Vec<PairTemplate>,
    pub metadata: Vec<PairTemplate>,
    pub line: LineFormat,
    pub remove_label_fields: bool,
    pub remove_metadata_fields: bool,
    pub tenant: Option<Template>,
    guard: Guard,
    static_pairs: Vec<(String, String)>,
    /// Counts events sent to the capped stream.
    pub on_capped: Box<dyn FnMut(&str) + Send>,
}

impl LokiEncoder {
    pub fn new(
        labels: Vec<PairTemplate>,
        metadata: Vec<PairTemplate>,
        line: LineFormat,
        tenant: Option<Template>,
        max_streams: usize,
    ) -> Self {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let mut static_pairs = Vec::new();
        let empty = Event::from_value(Value::Object(Default::default()));
        for l in labels.iter().filter(|l| l.is_static()) {
            l.render(&empty, now, &mut static_pairs);
        }
        Self {
            labels,
            metadata,
            line,
            remove_label_fields: false,
            remove_metadata_fields: false,
            tenant,
            guard: Guard {
                max_streams: max_streams.max(1),
                streams: HashMap::new(),
                window_start: Instant::now(),
                values: HashMap::new(),
                warned: false,
                capped: None,
            },
            static_pairs,
            on_capped: Box::new(|_| {}),
        }
    }

    /// Encodes `event` into its tenant and entry.
    pub fn encode(
        &mut self,
        event: &mut Event,
        now: DateTime<Utc>,
    ) -> Result<(Option<String>, LokiEntry), Rejection> {
        let tenant = match &self.tenant {
            None => None,
            Some(t) => Some(t.render(event, now).map_err(|m| Rejection {
                reason: "missing_field",
                detail: format!("tenant_id needs the field `{}`", m.0),
            })?),
        };
        let mut pairs = Vec::with_capacity(self.labels.len());
        for l in &self.labels {
            l.render(event, now, &mut pairs);
        }
        pairs.sort();
        pairs.dedup_by(|a, b| a.0 == b.0);
        if pairs.is_empty() {
            return Err(Rejection {
                reason: "no_labels",
                detail: "none of the configured labels could be rendered; Loki needs one".into(),
            });
        }
        if pairs.len() > MAX_LABELS {
            return Err(Rejection {
                reason: "too_many_labels",
                detail: format!(
                    "{} labels; Loki takes at most {MAX_LABELS} per stream",
                    pairs.len()
                ),
            });
        }
        if let Some((k, _)) = pairs.iter().find(|(_, v)| v.len() > MAX_LABEL_VALUE_BYTES) {
            return Err(Rejection {
                reason: "label_value_too_long",
                detail: format!("label `{k}` is longer than {MAX_LABEL_VALUE_BYTES} bytes"),
            });
        }
        let mut metadata = Vec::new();
        for m in &self.metadata {
            m.render(event, now, &mut metadata);
        }
        let ts = event.timestamp().unwrap_or(now);
        if self.remove_label_fields {
            for l in &self.labels {
                for p in l.fields() {
                    event.remove(&p);
                }
            }
        }
        if self.remove_metadata_fields {
            for m in &self.metadata {
                for p in m.fields() {
                    event.remove(&p);
                }
            }
        }
        let line = match &self.line {
            LineFormat::Json => {
                let mut buf = Vec::with_capacity(event.size());
                // Serialising a VRL value into memory cannot fail.
                let _ = serde_json::to_writer(&mut buf, &event.view());
                // serde_json writes UTF-8.
                String::from_utf8(buf).unwrap_or_default()
            }
            LineFormat::Text(path, name) => match event.get(path) {
                Some(Value::Bytes(b)) => crate::utf8::lossy(b).into_owned(),
                Some(Value::Null) | None => {
                    return Err(Rejection {
                        reason: "missing_field",
                        detail: format!("the line field `{name}` is missing"),
                    });
                }
                Some(v) => v.to_string_lossy().into_owned(),
            },
        };
        let stream = self.stream_for(pairs, &mut metadata);
        let timestamp_ns = ts.timestamp_nanos_opt().unwrap_or(0);
        Ok((tenant, LokiEntry { stream, timestamp_ns, line, metadata }))
    }

    /// The shared label set of `pairs`, or the capped stream when there are too many.
    fn stream_for(
        &mut self,
        pairs: Vec<(String, String)>,
        metadata: &mut Vec<(String, String)>,
    ) -> Arc<Stream> {
        let g = &mut self.guard;
        if g.window_start.elapsed() >= CARDINALITY_WINDOW {
            g.streams.clear();
            g.values.clear();
            g.window_start = Instant::now();
        }
        if let Some(s) = g.streams.get(&pairs) {
            return Arc::clone(s);
        }
        for (k, v) in &pairs {
            let set = g.values.entry(k.clone()).or_default();
            if set.len() <= g.max_streams {
                set.insert(v.clone());
            }
        }
        if g.streams.len() < g.max_streams {
            let s = Arc::new(Stream::new(pairs.clone()));
            g.streams.insert(pairs, Arc::clone(&s));
            return s;
        }
        let culprit = g
            .values
            .iter()
            .max_by_key(|(_, v)| v.len())
            .map(|(k, _)| k.clone())
            .unwrap_or_default();
        if !g.warned {
            g.warned = true;
            tracing::warn!(
                max_streams = g.max_streams,
                label = %culprit,
                "more distinct label sets than max_streams: label `{culprit}` has the most \
                 values; further new label sets go to the stream {{{CAPPED_LABEL}=\"true\"}} \
                 with their labels as structured metadata (warned once)"
            );
        }
        (self.on_capped)(&culprit);
        for (k, v) in pairs {
            if !self.static_pairs.iter().any(|(sk, _)| *sk == k) {
                metadata.push((k, v));
            }
        }
        let static_pairs = &self.static_pairs;
        Arc::clone(g.capped.get_or_insert_with(|| {
            let mut p = static_pairs.clone();
            p.push((CAPPED_LABEL.to_string(), "true".to_string()));
            Arc::new(Stream::new(p))
        }))
    }
}

/// Compiles `labels` or `structured_metadata` tables.
pub fn compile_pairs(
    table: &BTreeMap<String, String>,
    what: &str,
) -> Result<Vec<PairTemplate>, String> {
    table.iter().map(|(k, v)| PairTemplate::parse(k, v, what)).collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap()
    }

    fn encoder(labels: &[(&str, &str)], max_streams: usize) -> LokiEncoder {
        let table: BTreeMap<String, String> =
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        LokiEncoder::new(
            compile_pairs(&table, "label").unwrap(),
            compile_pairs(
                &[("model_version".to_string(), "{{ model.version }}".to_string())].into(),
                "structured_metadata",
            )
            .unwrap(),
            LineFormat::Json,
            None,
            max_streams,
        )
    }

    fn event() -> Event {
        let mut e = Event::from_message("predict ok");
        e.insert(&parse_path("service.name").unwrap(), Value::from("triton"));
        e.insert(&parse_path("model.version").unwrap(), Value::from("3"));
        e.insert(
            &parse_path("k8s.labels").unwrap(),
            Value::Object(
                [
                    ("app.kubernetes.io/name".into(), Value::from("triton")),
                    ("tier".into(), Value::from("gpu \"a\"")),
                ]
                .into_iter()
                .collect(),
            ),
        );
        e
    }

    #[test]
    fn labels_static_templated_and_expanded() {
        let mut enc = encoder(
            &[
                ("job", "weir"),
                ("service", "{{ service.name }}"),
                ("pod_*", "{{ k8s.labels }}"),
                ("absent", "{{ nope }}"),
            ],
            100,
        );
        let (tenant, entry) = enc.encode(&mut event(), now()).unwrap();
        assert_eq!(tenant, None);
        assert_eq!(
            entry.stream.text,
            r#"{job="weir", pod_app_kubernetes_io_name="triton", pod_tier="gpu \"a\"", service="triton"}"#
        );
        assert_eq!(entry.metadata, [("model_version".to_string(), "3".to_string())]);
        assert_eq!(entry.timestamp_ns, now().timestamp_nanos_opt().unwrap());
        assert!(entry.line.starts_with("{\"k8s\""));
    }

    #[test]
    fn remove_label_fields_and_text_lines() {
        let mut enc = encoder(&[("service", "{{ service.name }}")], 100);
        enc.remove_label_fields = true;
        enc.remove_metadata_fields = true;
        let (_, entry) = enc.encode(&mut event(), now()).unwrap();
        assert!(
            !entry.line.contains("triton\"}") && !entry.line.contains("\"service\""),
            "{}",
            entry.line
        );
        assert!(!entry.line.contains("\"model\""), "{}", entry.line);
        enc.line = LineFormat::Text(parse_path("message").unwrap(), "message".into());
        let (_, entry) = enc.encode(&mut event(), now()).unwrap();
        assert_eq!(entry.line, "predict ok");
    }

    #[test]
    fn rule_breaking_label_sets_are_rejected_before_sending() {
        let many: Vec<(String, String)> =
            (0..16).map(|i| (format!("l{i}"), format!("v{i}"))).collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let err = encoder(&refs, 100).encode(&mut event(), now()).unwrap_err();
        assert_eq!(err.reason, "too_many_labels");
        let err =
            encoder(&[("absent", "{{ nope }}")], 100).encode(&mut event(), now()).unwrap_err();
        assert_eq!(err.reason, "no_labels");
        assert!(PairTemplate::parse("bad-name", "x", "label").is_err());
        assert!(PairTemplate::parse("__name__", "x", "label").is_err());
        assert!(PairTemplate::parse("pod_*", "prefix {{ a }}", "label").is_err());
    }

    #[test]
    fn exploding_label_sets_are_capped_without_loss() {
        let mut enc = encoder(&[("job", "weir"), ("request_id", "{{ id }}")], 3);
        let mut streams = HashSet::new();
        for i in 0..10 {
            let mut e = event();
            e.insert_key("id", Value::from(format!("r{i}")));
            let (_, entry) = enc.encode(&mut e, now()).unwrap();
            streams.insert(entry.stream.text.clone());
            if i >= 3 {
                assert_eq!(entry.stream.text, r#"{job="weir", weir_cardinality_capped="true"}"#);
                assert!(entry.metadata.contains(&("request_id".to_string(), format!("r{i}"))));
            }
        }
        assert_eq!(streams.len(), 4);
        // A label set seen before the cap keeps its stream.
        let mut e = event();
        e.insert_key("id", Value::from("r1"));
        assert_eq!(
            enc.encode(&mut e, now()).unwrap().1.stream.text,
            r#"{job="weir", request_id="r1"}"#
        );
    }
}
