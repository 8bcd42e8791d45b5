//! A Loki stand-in, faithful to the push API weir relies on: `POST /loki/api/v1/push` with
//! snappy-compressed protobuf (its own message definitions, written from Loki's `push.proto`,
//! independent of weir's) or JSON (optionally gzip), the `X-Scope-OrgID` tenant header,
//! label validation with Loki's default limits (names, at most 15 labels, at least one, no
//! duplicates, value length), per-stream ordering (`entry too far behind` outside a window of
//! the newest entry; `entry out of order` when unordered writes are off), the maximum sample
//! age, and partial acceptance answered with 400 in Loki 3's wording. `GET /ready` answers
//! `ready`. Faults are injected per push from a queue; everything accepted is kept.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use prost::Message;

use crate::stand_in::{Reset, Resp, StandIn};

/// Loki's `push.proto`, as the stand-in reads it.
mod wire {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<Stream>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Stream {
        #[prost(string, tag = "1")]
        pub labels: String,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<Entry>,
        #[prost(uint64, tag = "3")]
        pub hash: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Ts>,
        #[prost(string, tag = "2")]
        pub line: String,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<Pair>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Pair {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Ts {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

#[derive(Debug, Clone)]
pub enum Fault {
    Status(u16),
    Reset,
    Delay(Duration),
}

/// One accepted entry.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub tenant: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub ts_ns: i64,
    pub line: String,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug)]
pub struct LokiState {
    pub accepted: Vec<Accepted>,
    pub faults: VecDeque<Fault>,
    pub require_tenant: bool,
    /// Entries older than the stream's newest minus this are "too far behind" (Loki: half of
    /// `max_chunk_age`, 1 h by default).
    pub window: Duration,
    /// `unordered_writes = false`: any entry older than the stream's newest is out of order.
    pub ordered: bool,
    /// `reject_old_samples_max_age`, measured against the stand-in's clock.
    pub max_sample_age: Option<Duration>,
    pub pushes: usize,
    pub protobuf_pushes: usize,
    /// Keep the entries (tests); benchmarks only count them.
    pub keep_entries: bool,
    /// Entries accepted (kept or not).
    pub accepted_count: usize,
    /// Newest timestamp per (tenant, stream).
    pub newest: HashMap<(Option<String>, String), i64>,
}

impl Default for LokiState {
    fn default() -> Self {
        Self {
            accepted: Vec::new(),
            faults: VecDeque::new(),
            require_tenant: false,
            window: Duration::from_secs(3600),
            ordered: false,
            max_sample_age: None,
            pushes: 0,
            protobuf_pushes: 0,
            keep_entries: true,
            accepted_count: 0,
            newest: HashMap::new(),
        }
    }
}

impl LokiState {
    /// Accepted entries by a field of their JSON line.
    pub fn count_by_line_field(&self, field: &str) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for a in &self.accepted {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&a.line)
                && let Some(id) = v.get(field).and_then(|x| x.as_str())
            {
                *out.entry(id.to_string()).or_insert(0) += 1;
            }
        }
        out
    }

    pub fn streams(&self) -> std::collections::BTreeSet<BTreeMap<String, String>> {
        self.accepted.iter().map(|a| a.labels.clone()).collect()
    }
}

/// A running stand-in on a loopback port; stops when dropped.
pub type LokiServer = StandIn<LokiState>;

impl LokiServer {
    pub fn start() -> Self {
        Self::start_with(LokiState::default())
    }

    pub fn start_with(state: LokiState) -> Self {
        StandIn::serve(state, handle)
    }
}

fn text(status: u16, body: impl Into<String>) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert("content-type", "text/plain; charset=utf-8".parse().unwrap());
    r
}

/// Parses `{a="b", c="d"}` (Prometheus label text) into pairs, keeping duplicates.
fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let inner = s
        .trim()
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .ok_or_else(|| format!("error parsing labels {s}"))?;
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            name.push(c);
            chars.next();
        }
        if chars.next() != Some('=') || chars.next() != Some('"') {
            return Err(format!("error parsing labels {s}"));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some('r') => value.push('\r'),
                    Some(c) => value.push(c),
                    None => return Err(format!("error parsing labels {s}")),
                },
                Some('"') => break,
                Some(c) => value.push(c),
                None => return Err(format!("error parsing labels {s}")),
            }
        }
        out.push((name.trim().to_string(), value));
    }
    Ok(out)
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(x) if x.is_ascii_alphabetic() || x == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// Go's `time.Time.String()` in UTC.
fn go_time(ns: i64) -> String {
    let t = chrono::DateTime::from_timestamp_nanos(ns);
    let frac = t.timestamp_subsec_nanos();
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    if frac != 0 {
        s.push('.');
        s.push_str(format!("{frac:09}").trim_end_matches('0'));
    }
    s + " +0000 UTC"
}

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One pushed entry: time in nanoseconds, line, structured metadata.
type PushEntry = (i64, String, Vec<(String, String)>);

struct PushStream {
    labels: String,
    entries: Vec<PushEntry>,
}

async fn handle(req: Request<Incoming>, state: Arc<Mutex<LokiState>>) -> Result<Resp, Reset> {
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else { return Err(Reset) };
    match (parts.method.as_str(), parts.uri.path()) {
        ("GET", "/ready") => return Ok(text(200, "ready\n")),
        ("POST", "/loki/api/v1/push") => {}
        _ => return Ok(text(404, "404 page not found\n")),
    }
    let fault = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        st.pushes += 1;
        st.faults.pop_front()
    };
    match fault {
        Some(Fault::Status(s)) => {
            return Ok(text(
                s,
                match s {
                    429 => {
                        "Ingestion rate limit exceeded for user fake (limit: 4194304 bytes/sec) while attempting to ingest '100' lines totaling '10000' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased\n"
                    }
                    // Go's mux for a path nothing serves (a wrong `endpoint`, a proxy's prefix).
                    404 => "404 page not found\n",
                    // A whole push refused by the distributor's validation.
                    400 => "error at least one label pair is required per stream\n",
                    _ => "injected failure\n",
                },
            ));
        }
        Some(Fault::Reset) => return Err(Reset),
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let tenant =
        parts.headers.get("x-scope-orgid").and_then(|h| h.to_str().ok()).map(str::to_string);
    if tenant.is_none() && state.lock().unwrap_or_else(|e| e.into_inner()).require_tenant {
        return Ok(text(401, "no org id\n"));
    }
    let content_type =
        parts.headers.get("content-type").and_then(|h| h.to_str().ok()).unwrap_or("");
    let streams: Vec<PushStream> = if content_type.starts_with("application/x-protobuf") {
        let Ok(raw) = snap::raw::Decoder::new().decompress_vec(&body) else {
            return Ok(text(400, "snappy: corrupt input\n"));
        };
        let Ok(push) = wire::PushRequest::decode(&raw[..]) else {
            return Ok(text(400, "failed to decode protobuf push request\n"));
        };
        state.lock().unwrap_or_else(|e| e.into_inner()).protobuf_pushes += 1;
        push.streams
            .into_iter()
            .map(|s| PushStream {
                labels: s.labels,
                entries: s
                    .entries
                    .into_iter()
                    .map(|e| {
                        let ts = e
                            .timestamp
                            .map_or(0, |t| t.seconds * 1_000_000_000 + i64::from(t.nanos));
                        let md =
                            e.structured_metadata.into_iter().map(|p| (p.name, p.value)).collect();
                        (ts, e.line, md)
                    })
                    .collect(),
            })
            .collect()
    } else if content_type.starts_with("application/json") {
        let raw = if parts.headers.get("content-encoding").and_then(|h| h.to_str().ok())
            == Some("gzip")
        {
            let mut out = Vec::new();
            if flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out).is_err() {
                return Ok(text(400, "gzip: invalid header\n"));
            }
            out
        } else {
            body.to_vec()
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&raw) else {
            return Ok(text(400, "loghttp.PushRequest.Streams: ReadArray: expect [ or n\n"));
        };
        let mut out = Vec::new();
        for s in v["streams"].as_array().cloned().unwrap_or_default() {
            let labels: Vec<String> = s["stream"]
                .as_object()
                .map(|m| {
                    let mut pairs: Vec<_> = m.iter().collect();
                    pairs.sort_by(|a, b| a.0.cmp(b.0));
                    pairs
                        .into_iter()
                        .map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            let mut entries = Vec::new();
            for val in s["values"].as_array().cloned().unwrap_or_default() {
                let ts = val[0].as_str().and_then(|t| t.parse::<i64>().ok()).unwrap_or(0);
                let line = val[1].as_str().unwrap_or_default().to_string();
                let md = val
                    .get(2)
                    .and_then(|m| m.as_object())
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                entries.push((ts, line, md));
            }
            out.push(PushStream { labels: format!("{{{}}}", labels.join(", ")), entries });
        }
        out
    } else {
        return Ok(text(415, format!("unsupported content type: {content_type}\n")));
    };

    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    // As the distributor: the first validation error is returned; as the ingester: the last
    // stream's ignored entries.
    let mut validation_error: Option<String> = None;
    let mut ingester_error: Option<String> = None;
    for s in streams {
        let pairs = match parse_labels(&s.labels) {
            Ok(p) => p,
            Err(e) => {
                validation_error.get_or_insert(e);
                continue;
            }
        };
        if pairs.is_empty() {
            validation_error
                .get_or_insert("error at least one label pair is required per stream".into());
            continue;
        }
        if pairs.len() > 15 {
            validation_error.get_or_insert(format!(
                "entry for stream '{}' has {} label names; limit 15",
                s.labels,
                pairs.len()
            ));
            continue;
        }
        let mut names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) || !names.iter().all(|n| valid_name(n)) {
            validation_error.get_or_insert(format!("invalid labels '{}'", s.labels));
            continue;
        }
        if pairs.iter().any(|(_, v)| v.len() > 2048) {
            validation_error
                .get_or_insert(format!("stream '{}' has label value too long", s.labels));
            continue;
        }
        let labels: BTreeMap<String, String> = pairs.into_iter().collect();
        let key = (tenant.clone(), s.labels.clone());
        let mut failed: Vec<(i64, String)> = Vec::new();
        let total = s.entries.len();
        for (ts, line, md) in s.entries {
            if let Some(age) = st.max_sample_age
                && ts < now_ns - age.as_nanos() as i64
            {
                validation_error.get_or_insert(format!(
                    "entry for stream '{}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                    s.labels,
                    rfc3339(ts),
                    rfc3339(now_ns - age.as_nanos() as i64)
                ));
                continue;
            }
            let newest = st.newest.get(&key).copied();
            if let Some(n) = newest {
                if st.ordered && ts < n {
                    failed.push((ts, "entry out of order".into()));
                    continue;
                }
                let oldest = n - st.window.as_nanos() as i64;
                if ts < oldest {
                    failed.push((
                        ts,
                        format!(
                            "entry too far behind, entry timestamp is: {}, oldest acceptable timestamp is: {}",
                            rfc3339(ts),
                            rfc3339(oldest)
                        ),
                    ));
                    continue;
                }
            }
            st.newest.insert(key.clone(), newest.map_or(ts, |n| n.max(ts)));
            st.accepted_count += 1;
            if !st.keep_entries {
                continue;
            }
            st.accepted.push(Accepted {
                tenant: tenant.clone(),
                labels: labels.clone(),
                ts_ns: ts,
                line,
                metadata: md.into_iter().collect(),
            });
        }
        if !failed.is_empty() {
            let mut msg = String::new();
            for (ts, why) in failed.iter().take(10) {
                msg.push_str(&format!(
                    "entry with timestamp {} ignored, reason: '{why}',\n",
                    go_time(*ts)
                ));
            }
            msg.push_str(&format!(
                "user '{}', total ignored: {} out of {} for stream: {}",
                tenant.as_deref().unwrap_or("fake"),
                failed.len(),
                total,
                s.labels
            ));
            ingester_error = Some(msg);
        }
    }
    drop(st);
    match validation_error.or(ingester_error) {
        Some(e) => Ok(text(400, e + "\n")),
        None => Ok(text(204, "")),
    }
}
