//! `POST /loki/api/v1/push` requests (protobuf with snappy, or JSON) and the reading of Loki's
//! answers.
//!
//! Entries are grouped by stream and sorted by time within each stream of a request (stable,
//! so equal timestamps keep their order), which is what Loki's ordering rules expect.
//!
//! Responses: 2xx delivered; 408, 429 and 5xx sent again with backoff; 413 split; 401/403
//! sent again with backoff, the sink unhealthy meanwhile (see the driver); any other 4xx
//! (404: a wrong `endpoint`) rejects the request's entries, reason `http_<status>`, with the
//! body's start as the message. Bodies are read up to [`response_limit`] bytes.
//! A 400 is partial acceptance, not a reason to resend: Loki stored the other entries
//! and names the ones it ignored, up to ten per stream, as
//! `entry with timestamp <t> ignored, reason: '<why>'` followed by
//! `user '<tenant>', total ignored: <n> out of <m> for stream: <labels>` (Loki 3; Loki 2 puts
//! `for stream:` on each entry line). Named entries are matched by stream and timestamp and
//! rejected with their reason (`entry_out_of_order`, `entry_too_far_behind`,
//! `greater_than_max_sample_age`); ignored entries beyond those named cannot be told apart, so
//! they are counted under the same reason and logged, and the request's other entries count
//! as delivered. A 400 that names nothing weir can read rejects every entry of the request
//! (`http_400`): resending could store twice what Loki kept.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};

use super::encoder::LokiEntry;
use super::proto;
use crate::sinks::util::driver::{Item, ItemOutcome, Service, Verdict};
use crate::sinks::util::http::{HttpRequest, HttpResponse, snappy};

/// `format` of the push body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushFormat {
    /// `PushRequest` in protobuf, snappy block compressed (what Promtail sends).
    #[default]
    Protobuf,
    /// The JSON push format.
    Json,
}

pub struct PushService {
    pub format: PushFormat,
    /// Counts ignored entries Loki did not name (see [`classify`]).
    pub metrics: crate::sinks::util::metrics::SinkMetrics,
}

/// Entries grouped by stream text, each group sorted by time, streams in label order.
fn grouped(items: &[Item<LokiEntry>]) -> Vec<(&LokiEntry, Vec<&LokiEntry>)> {
    let mut by_stream: BTreeMap<&str, Vec<&LokiEntry>> = BTreeMap::new();
    for i in items {
        by_stream.entry(i.payload.stream.text.as_str()).or_default().push(&i.payload);
    }
    by_stream
        .into_values()
        .map(|mut entries| {
            entries.sort_by_key(|e| e.timestamp_ns);
            (entries[0], entries)
        })
        .collect()
}

/// The protobuf `PushRequest` of `items`, uncompressed.
///
/// Written field by field with prost's wire-format functions rather than through the derived
/// messages of [`proto`]: those own their strings, so filling them copied every line and
/// label of the request once more, a second copy of the whole batch alive while it was
/// encoded (1.4 MiB at the peak of `benches/compare`'s Loki scenario). The bytes are the
/// derived messages' encoding, fields in tag order and empty strings left out (tested).
pub fn protobuf_body(items: &[Item<LokiEntry>]) -> Vec<u8> {
    use prost::encoding::{WireType, encode_key, encode_varint, message, string};

    let streams = grouped(items);
    let lens: Vec<usize> =
        streams.iter().map(|(first, entries)| stream_len(&first.stream.text, entries)).collect();
    let total = lens.iter().map(|&l| nested_len(1, l)).sum();
    let mut buf = Vec::with_capacity(total);
    let field = |tag: u32, len: usize, buf: &mut Vec<u8>| {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(len as u64, buf);
    };
    for ((first, entries), len) in streams.iter().zip(lens) {
        // PushRequest.streams (1): StreamAdapter { labels (1), entries (2) }; `hash` (3) is 0.
        field(1, len, &mut buf);
        if !first.stream.text.is_empty() {
            string::encode(1, &first.stream.text, &mut buf);
        }
        for e in entries {
            // EntryAdapter { timestamp (1), line (2), structured_metadata (3) }.
            field(2, entry_len(e), &mut buf);
            message::encode(1, &timestamp(e), &mut buf);
            if !e.line.is_empty() {
                string::encode(2, &e.line, &mut buf);
            }
            for (name, value) in &e.metadata {
                // LabelPairAdapter { name (1), value (2) }.
                field(3, pair_len(name, value), &mut buf);
                if !name.is_empty() {
                    string::encode(1, name, &mut buf);
                }
                if !value.is_empty() {
                    string::encode(2, value, &mut buf);
                }
            }
        }
    }
    buf
}

/// An entry's time as `google.protobuf.Timestamp`.
fn timestamp(e: &LokiEntry) -> proto::Timestamp {
    proto::Timestamp {
        seconds: e.timestamp_ns.div_euclid(1_000_000_000),
        nanos: e.timestamp_ns.rem_euclid(1_000_000_000) as i32,
    }
}

/// Encoded length of a length-delimited field of `len` bytes.
fn nested_len(tag: u32, len: usize) -> usize {
    prost::encoding::key_len(tag) + prost::encoding::encoded_len_varint(len as u64) + len
}

/// Encoded length of a string field (none when empty, as proto3 leaves it out).
fn string_len(tag: u32, s: &String) -> usize {
    if s.is_empty() { 0 } else { prost::encoding::string::encoded_len(tag, s) }
}

fn pair_len(name: &String, value: &String) -> usize {
    string_len(1, name) + string_len(2, value)
}

fn entry_len(e: &LokiEntry) -> usize {
    prost::encoding::message::encoded_len(1, &timestamp(e))
        + string_len(2, &e.line)
        + e.metadata.iter().map(|(k, v)| nested_len(3, pair_len(k, v))).sum::<usize>()
}

fn stream_len(labels: &String, entries: &[&LokiEntry]) -> usize {
    string_len(1, labels) + entries.iter().map(|e| nested_len(2, entry_len(e))).sum::<usize>()
}

/// The JSON push body of `items`.
pub fn json_body(items: &[Item<LokiEntry>]) -> Vec<u8> {
    let streams: Vec<serde_json::Value> = grouped(items)
        .into_iter()
        .map(|(first, entries)| {
            let labels: serde_json::Map<String, serde_json::Value> = first
                .stream
                .pairs
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            let values: Vec<serde_json::Value> = entries
                .into_iter()
                .map(|e| {
                    let mut v = vec![
                        serde_json::Value::String(e.timestamp_ns.to_string()),
                        serde_json::Value::String(e.line.clone()),
                    ];
                    if !e.metadata.is_empty() {
                        let m: serde_json::Map<String, serde_json::Value> = e
                            .metadata
                            .iter()
                            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                            .collect();
                        v.push(serde_json::Value::Object(m));
                    }
                    serde_json::Value::Array(v)
                })
                .collect();
            serde_json::json!({ "stream": labels, "values": values })
        })
        .collect();
    serde_json::json!({ "streams": streams }).to_string().into_bytes()
}

impl Service for PushService {
    type Key = Option<String>;
    type Payload = LokiEntry;

    fn build(
        &self,
        tenant: &Option<String>,
        items: &mut [Item<LokiEntry>],
    ) -> Result<HttpRequest, String> {
        let mut headers = Vec::with_capacity(2);
        let body = match self.format {
            PushFormat::Protobuf => {
                headers.push((CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf")));
                snappy(&protobuf_body(items))?
            }
            PushFormat::Json => {
                headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
                json_body(items)
            }
        };
        if let Some(t) = tenant {
            let v = HeaderValue::from_str(t)
                .map_err(|_| format!("tenant id `{t}` is not a valid header value"))?;
            headers.push((HeaderName::from_static("x-scope-orgid"), v));
        }
        Ok(HttpRequest {
            method: reqwest::Method::POST,
            path: "/loki/api/v1/push".into(),
            headers,
            body: Bytes::from(body),
        })
    }

    fn response_limit(&self, items: &[Item<LokiEntry>]) -> usize {
        response_limit(items.iter().map(|i| i.payload.stream.text.as_str()))
    }

    fn classify(&self, response: &HttpResponse, items: &[Item<LokiEntry>]) -> Verdict {
        let entries: Vec<&LokiEntry> = items.iter().map(|i| &i.payload).collect();
        let (verdict, unidentified) = classify(response.status, &response.body, &entries);
        if let Some((reason, count)) = unidentified {
            self.metrics.rejected(reason, count);
        }
        verdict
    }

    /// The stream's labels (with the tenant, when there is one), and the line.
    fn dead_letter(&self, tenant: &Option<String>, entry: &LokiEntry) -> (Option<String>, String) {
        let stream = match tenant {
            Some(t) => format!("{} (tenant {t})", entry.stream.text),
            None => entry.stream.text.clone(),
        };
        (Some(stream), entry.line.clone())
    }
}

/// What any push response may hold besides what it says per stream.
pub const RESPONSE_BASE_BYTES: usize = 64 * 1024;

/// What a 400 may say of one stream besides its labels: up to ten ignored entries (a timestamp
/// and a reason each) and a summary line.
pub const RESPONSE_BYTES_PER_STREAM: usize = 4 * 1024;

/// The most bytes read of the response to a push of entries in `streams` (each entry's
/// stream labels, repeats allowed): the base, and per distinct stream its allowance and its
/// labels twice (a summary line and a whole-stream message may each name them).
pub fn response_limit<'a>(streams: impl Iterator<Item = &'a str>) -> usize {
    let distinct: std::collections::HashSet<&str> = streams.collect();
    distinct.iter().fold(RESPONSE_BASE_BYTES, |limit, labels| {
        limit.saturating_add(RESPONSE_BYTES_PER_STREAM + 2 * labels.len())
    })
}

/// A reason of Loki's in the metric's words.
pub fn reason_name(reason: &str) -> &'static str {
    if reason.contains("out of order") {
        "entry_out_of_order"
    } else if reason.contains("too far behind") {
        "entry_too_far_behind"
    } else if reason.contains("too old") || reason.contains("max sample age") {
        "greater_than_max_sample_age"
    } else if reason.contains("too new") || reason.contains("too far in the future") {
        "too_far_in_future"
    } else if reason.contains("line too long") || reason.contains("line_too_long") {
        "line_too_long"
    } else if reason.contains("label") {
        "invalid_labels"
    } else if reason.contains("structured metadata") {
        "structured_metadata"
    } else {
        "loki_rejected"
    }
}

/// Go's `time.Time.String()` of a UTC time: `2006-01-02 15:04:05.999999999 +0000 UTC`, the
/// fraction without trailing zeros and absent when zero.
pub fn go_time_string(ns: i64) -> String {
    let t: DateTime<Utc> = DateTime::from_timestamp_nanos(ns);
    let frac = t.timestamp_subsec_nanos();
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    if frac != 0 {
        let digits = format!("{frac:09}");
        s.push('.');
        s.push_str(digits.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

/// What a 400 body says was ignored.
#[derive(Debug, Default, PartialEq)]
struct Ignored {
    /// (timestamp as Loki wrote it, reason, stream when given on the line).
    entries: Vec<(String, String, Option<String>)>,
    /// (stream, total ignored) from the summary line.
    total: Option<(Option<String>, usize)>,
    /// `entry for stream '<s>' has timestamp too old: <t>, oldest acceptable timestamp is: <t>`
    /// and other whole-stream messages: (stream, reason).
    streams: Vec<(String, String)>,
}

fn parse_400(body: &str) -> Ignored {
    let mut out = Ignored::default();
    for line in body.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("entry with timestamp ") {
            let Some((ts, rest)) = rest.split_once(" ignored, reason: '") else { continue };
            let (reason, tail) = match rest.rsplit_once('\'') {
                Some((r, t)) => (r.to_string(), t),
                None => (rest.to_string(), ""),
            };
            let stream = tail
                .trim_start()
                .strip_prefix("for stream: ")
                .map(|s| s.trim_end_matches(',').to_string());
            out.entries.push((ts.to_string(), reason, stream));
        } else if let Some(idx) = line.find("total ignored: ") {
            let rest = &line[idx + "total ignored: ".len()..];
            let n = rest.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let stream = rest.split_once("for stream: ").map(|(_, s)| s.to_string());
            out.total = Some((stream, n));
        } else if let Some(rest) = line.strip_prefix("entry for stream '") {
            if let Some((stream, reason)) = rest.split_once("' has ") {
                out.streams.push((stream.to_string(), reason.to_string()));
            }
        } else if let Some(rest) = line.strip_prefix("stream '")
            && let Some((stream, reason)) = rest.split_once("' ")
        {
            out.streams.push((stream.to_string(), reason.to_string()));
        }
    }
    out
}

/// Classifies a push response to the request carrying `entries` (in request order). The
/// second value counts entries Loki said it ignored without naming them, by reason.
pub fn classify(
    status: u16,
    body: &[u8],
    entries: &[&LokiEntry],
) -> (Verdict, Option<(&'static str, usize)>) {
    if status == 400 {
        return classify_400(&String::from_utf8_lossy(body), entries);
    }
    let text = || String::from_utf8_lossy(&body[..body.len().min(1000)]).trim().to_string();
    let verdict = match status {
        200..=299 => Verdict::Items {
            outcomes: vec![ItemOutcome::Delivered; entries.len()],
            throttled: false,
        },
        413 => Verdict::Split,
        408 | 429 => Verdict::RetryAll {
            reason: format!("HTTP {status}: {}", text()),
            throttled: status == 429,
        },
        500..=599 => Verdict::RetryAll {
            reason: format!("HTTP {status}: {}", text()),
            throttled: status == 503,
        },
        401 | 403 => Verdict::Unauthorized(format!(
            "Loki refused the credentials or tenant (HTTP {status}: {}); check `auth` and \
             `tenant_id`",
            text()
        )),
        400..=499 => Verdict::RejectAll {
            reason: format!("http_{status}"),
            detail: format!("HTTP {status}: {}", text()),
        },
        _ => Verdict::RetryAll {
            reason: format!("unexpected HTTP {status} to a push: {}", text()),
            throttled: false,
        },
    };
    (verdict, None)
}

fn classify_400(body: &str, entries: &[&LokiEntry]) -> (Verdict, Option<(&'static str, usize)>) {
    let ignored = parse_400(body);
    let mut outcomes = vec![ItemOutcome::Delivered; entries.len()];
    let reject = |reason: &str| ItemOutcome::Rejected {
        reason: reason_name(reason).to_string(),
        detail: reason.to_string(),
    };
    // Index: (stream text, go time) -> positions not yet matched.
    let mut index: HashMap<(&str, String), Vec<usize>> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        index.entry((e.stream.text.as_str(), go_time_string(e.timestamp_ns))).or_default().push(i);
    }
    let summary_stream = ignored.total.as_ref().and_then(|(s, _)| s.clone());
    let mut matched = 0usize;
    let mut last_reason = String::new();
    for (ts, reason, stream) in &ignored.entries {
        last_reason.clone_from(reason);
        let Some(stream) = stream.as_deref().or(summary_stream.as_deref()) else { continue };
        if let Some(positions) = index.get_mut(&(stream, ts.clone()))
            && let Some(i) = positions.pop()
        {
            outcomes[i] = reject(reason);
            matched += 1;
        }
    }
    for (stream, reason) in &ignored.streams {
        last_reason.clone_from(reason);
        for (i, e) in entries.iter().enumerate() {
            if e.stream.text == *stream && outcomes[i] == ItemOutcome::Delivered {
                outcomes[i] = reject(reason);
                matched += 1;
            }
        }
    }
    let total = ignored.total.as_ref().map_or(matched, |(_, n)| *n);
    if matched == 0 && total == 0 && ignored.streams.is_empty() {
        // A 400 weir cannot read: nothing tells which entries Loki kept. Resending could
        // repeat what was stored; the request's entries are rejected with Loki's words.
        let detail = body.trim().chars().take(500).collect::<String>();
        let verdict =
            Verdict::RejectAll { reason: "http_400".into(), detail: format!("HTTP 400: {detail}") };
        return (verdict, None);
    }
    let mut unidentified = None;
    if total > matched {
        tracing::warn!(
            ignored = total,
            identified = matched,
            reason = reason_name(&last_reason),
            "Loki ignored more entries than it named; the rest cannot be told apart and are \
             counted with the named ones' reason"
        );
        unidentified = Some((reason_name(&last_reason), total - matched));
    }
    (Verdict::Items { outcomes, throttled: false }, unidentified)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prost::Message as _;

    use super::super::encoder::Stream;
    use super::*;

    fn entry(labels: &[(&str, &str)], ns: i64, line: &str) -> LokiEntry {
        LokiEntry {
            stream: Arc::new(Stream::new(
                labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            )),
            timestamp_ns: ns,
            line: line.to_string(),
            metadata: Vec::new(),
        }
    }

    #[test]
    fn go_time_strings() {
        assert_eq!(go_time_string(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(go_time_string(1_500_000_000), "1970-01-01 00:00:01.5 +0000 UTC");
        assert_eq!(
            go_time_string(1_732_700_000_000_000_123),
            "2024-11-27 09:33:20.000000123 +0000 UTC"
        );
    }

    #[test]
    fn loki3_partial_acceptance_names_the_ignored_entries() {
        let a = entry(&[("app", "foo")], 1_000_000_000, "old");
        let b = entry(&[("app", "foo")], 5_000_000_000_000, "new");
        let c = entry(&[("app", "bar")], 1_000_000_000, "other stream");
        // As Loki 3's ingester writes it (pkg/ingester/stream.go).
        let body = "entry with timestamp 1970-01-01 00:00:01 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 1970-01-01T00:00:01Z, oldest acceptable timestamp is: 1970-01-01T00:23:20Z',\nuser 'fake', total ignored: 1 out of 2 for stream: {app=\"foo\"}";
        let Verdict::Items { outcomes, .. } = classify(400, body.as_bytes(), &[&a, &b, &c]).0
        else {
            panic!()
        };
        assert!(
            matches!(&outcomes[0], ItemOutcome::Rejected { reason, .. } if reason == "entry_too_far_behind")
        );
        assert_eq!(outcomes[1], ItemOutcome::Delivered);
        assert_eq!(outcomes[2], ItemOutcome::Delivered, "same time, other stream");
    }

    #[test]
    fn loki2_format_and_out_of_order() {
        let a = entry(&[("foo", "bar")], 0, "x");
        let b = entry(&[("foo", "bar")], 1_000_000_000, "y");
        let body = "entry with timestamp 1970-01-01 00:00:00 +0000 UTC ignored, reason: 'entry out of order' for stream: {foo=\"bar\"},\ntotal ignored: 1 out of 2";
        let Verdict::Items { outcomes, .. } = classify(400, body.as_bytes(), &[&a, &b]).0 else {
            panic!()
        };
        assert!(
            matches!(&outcomes[0], ItemOutcome::Rejected { reason, .. } if reason == "entry_out_of_order")
        );
        assert_eq!(outcomes[1], ItemOutcome::Delivered);
    }

    #[test]
    fn max_sample_age_rejects_the_stream_entries() {
        let a = entry(&[("job", "weir")], 0, "ancient");
        let b = entry(&[("job", "other")], 0, "fine");
        let body = "entry for stream '{job=\"weir\"}' has timestamp too old: 1970-01-01T00:00:00Z, oldest acceptable timestamp is: 2026-11-20T10:00:00Z";
        let Verdict::Items { outcomes, .. } = classify(400, body.as_bytes(), &[&a, &b]).0 else {
            panic!()
        };
        assert!(
            matches!(&outcomes[0], ItemOutcome::Rejected { reason, .. } if reason == "greater_than_max_sample_age")
        );
        assert_eq!(outcomes[1], ItemOutcome::Delivered);
    }

    #[test]
    fn statuses() {
        let a = entry(&[("job", "weir")], 0, "x");
        assert_eq!(
            classify(204, b"", &[&a]).0,
            Verdict::Items { outcomes: vec![ItemOutcome::Delivered], throttled: false }
        );
        assert!(matches!(
            classify(429, b"Ingestion rate limit exceeded", &[&a]).0,
            Verdict::RetryAll { throttled: true, .. }
        ));
        assert!(matches!(classify(500, b"", &[&a]).0, Verdict::RetryAll { .. }));
        assert!(matches!(
            classify(401, b"no org id", &[&a]).0,
            Verdict::Unauthorized(m) if m.contains("no org id")
        ));
        assert!(matches!(classify(403, b"", &[&a]).0, Verdict::Unauthorized(_)));
        assert!(matches!(classify(408, b"", &[&a]).0, Verdict::RetryAll { .. }));
        assert_eq!(classify(413, b"", &[&a]).0, Verdict::Split);
        assert_eq!(
            classify(400, b"something else\n", &[&a]).0,
            Verdict::RejectAll {
                reason: "http_400".into(),
                detail: "HTTP 400: something else".into()
            }
        );
        assert_eq!(
            classify(404, b"404 page not found\n", &[&a]).0,
            Verdict::RejectAll {
                reason: "http_404".into(),
                detail: "HTTP 404: 404 page not found".into()
            }
        );
        assert!(matches!(classify(301, b"", &[&a]).0, Verdict::RetryAll { .. }));
    }

    #[test]
    fn responses_are_bounded_by_the_streams_of_the_request() {
        let labels = ["{job=\"a\"}", "{job=\"b\"}", "{job=\"a\"}"];
        assert_eq!(response_limit([].into_iter()), RESPONSE_BASE_BYTES);
        assert_eq!(
            response_limit(labels.into_iter()),
            RESPONSE_BASE_BYTES + 2 * (RESPONSE_BYTES_PER_STREAM + 2 * labels[0].len())
        );
    }

    /// The request as the derived messages of `proto` encode it.
    fn derived_body(items: &[Item<LokiEntry>]) -> Vec<u8> {
        let streams = grouped(items)
            .into_iter()
            .map(|(first, entries)| proto::StreamAdapter {
                labels: first.stream.text.clone(),
                entries: entries
                    .into_iter()
                    .map(|e| proto::EntryAdapter {
                        timestamp: Some(timestamp(e)),
                        line: e.line.clone(),
                        structured_metadata: e
                            .metadata
                            .iter()
                            .map(|(k, v)| proto::LabelPairAdapter {
                                name: k.clone(),
                                value: v.clone(),
                            })
                            .collect(),
                    })
                    .collect(),
                hash: 0,
            })
            .collect();
        proto::PushRequest { streams }.encode_to_vec()
    }

    #[test]
    fn the_body_is_the_derived_messages_encoding() {
        let long = "x".repeat(300);
        let mut with_metadata = entry(&[("job", "weir"), ("host", "a")], 1_700_000_000_123, "m");
        with_metadata.metadata.push(("trace_id".into(), "abc".into()));
        with_metadata.metadata.push(("empty".into(), String::new()));
        with_metadata.metadata.push((String::new(), "no name".into()));
        let cases = vec![
            with_metadata,
            entry(&[("job", "weir"), ("host", "a")], 0, ""),
            entry(&[("job", "weir"), ("host", "a")], -1_500_000_000, &long),
            entry(&[("app", "x")], i64::MAX, "last"),
            entry(&[], 5, "no labels"),
        ];
        let mk = |e: LokiEntry| {
            let mut ev = crate::event::Event::from_message("x");
            Item::new(e, 1, &mut ev)
        };
        let items: Vec<_> = cases.into_iter().map(mk).collect();
        for n in 0..=items.len() {
            assert_eq!(protobuf_body(&items[..n]), derived_body(&items[..n]), "{n} items");
        }
        // Streams of more than 127 bytes take two-byte lengths.
        let many: Vec<_> =
            (0..40).map(|i| mk(entry(&[("job", "weir")], i, &format!("line {i}")))).collect();
        assert!(protobuf_body(&many).len() > 300);
        assert_eq!(protobuf_body(&many), derived_body(&many));
    }

    #[test]
    fn golden_bodies_sorted_per_stream() {
        let mut e1 = entry(&[("job", "weir")], 2_000_000_001, "second");
        e1.metadata.push(("request_id".into(), "r1".into()));
        let e0 = entry(&[("job", "weir")], 1_000_000_000, "first");
        let other = entry(&[("app", "x")], 5, "other");
        let mk = |e: LokiEntry| {
            let mut ev = crate::event::Event::from_message("x");
            Item::new(e, 1, &mut ev)
        };
        let items = vec![mk(e1), mk(other), mk(e0)];
        assert_eq!(
            String::from_utf8(json_body(&items)).unwrap(),
            concat!(
                r#"{"streams":[{"stream":{"app":"x"},"values":[["5","other"]]},"#,
                r#"{"stream":{"job":"weir"},"values":[["1000000000","first"],"#,
                r#"["2000000001","second",{"request_id":"r1"}]]}]}"#
            )
        );
        let decoded = proto::PushRequest::decode(&protobuf_body(&items)[..]).unwrap();
        assert_eq!(decoded.streams.len(), 2);
        assert_eq!(decoded.streams[1].labels, "{job=\"weir\"}");
        let ts: Vec<_> = decoded.streams[1].entries.iter().map(|e| e.timestamp.unwrap()).collect();
        assert_eq!(
            ts,
            [proto::Timestamp { seconds: 1, nanos: 0 }, proto::Timestamp { seconds: 2, nanos: 1 }]
        );
        assert_eq!(decoded.streams[1].entries[1].structured_metadata[0].name, "request_id");
        // The exact bytes: field 1 (streams), then labels (1), entries (2: timestamp, line).
        let one = vec![mk(entry(&[("a", "b")], 1_000_000_000, "hi"))];
        assert_eq!(
            protobuf_body(&one),
            [
                0x0a, 0x13, // streams, 19 bytes
                0x0a, 0x07, b'{', b'a', b'=', b'"', b'b', b'"', b'}', // labels
                0x12, 0x08, // entries, 8 bytes
                0x0a, 0x02, 0x08, 0x01, // timestamp { seconds: 1 }
                0x12, 0x02, b'h', b'i', // line
            ]
        );
    }
}
