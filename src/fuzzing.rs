//! One entry function per fuzz target: every parser of bytes from outside, fed arbitrary
//! bytes, with the invariants each promises checked by assertions.
//!
//! The `cargo fuzz` targets in `fuzz/` and the corpus replay test (`tests/it/fuzz_corpora.rs`)
//! both call these functions, so what the fuzzer ran and what `cargo test` replays cannot
//! drift apart. An entry function panics only when an invariant is broken: a panic here is a
//! bug in weir (or in the assertion), never an expected outcome of bad input.
//!
//! Targets that need settings (a limit, a mode) take them from the first bytes of the input,
//! so that one corpus file fixes a whole run; [`Params`] reads them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, TimeZone, Utc};
use serde::de::DeserializeOwned;
use tokio_util::codec::Decoder;

use crate::error::ConfigIssue;
use crate::event::Event;
use crate::metrics::{ComponentLabels, ComponentMetrics};
use crate::sinks::elasticsearch::encoder::Op;
use crate::sinks::loki::encoder::{LokiEntry, Stream};
use crate::sinks::util::driver::Verdict;
use crate::sources::syslog::framing::{Frame, SyslogDecoder};
use crate::sources::util::lines::{LineFramer, Oversize};
use crate::sources::util::multiline::{Group, Mode, Multiline, MultilineConfig};
use crate::transforms::{Transform, TransformComponent, TransformOutput};

/// A target's entry: one input, any bytes.
pub type Entry = fn(&[u8]);

/// The targets, by the name of their `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/`.
pub const TARGETS: &[(&str, Entry)] = &[
    ("syslog_framing", syslog_framing),
    ("syslog_parse", syslog_parse),
    ("line_framer", line_framer),
    ("multiline", multiline),
    ("kubernetes_cri", kubernetes_cri),
    ("kubernetes_docker", kubernetes_docker),
    ("kubernetes_watch", kubernetes_watch),
    ("parse_json", parse_json),
    ("parse_grok", parse_grok),
    ("parse_kv", parse_kv),
    ("parse_logfmt", parse_logfmt),
    ("parse_timestamp", parse_timestamp),
    ("parse_model_log", parse_model_log),
    ("es_bulk_response", es_bulk_response),
    ("loki_response", loki_response),
    ("disk_buffer_recovery", disk_buffer_recovery),
    ("config", config),
    ("http_server_body", http_server_body),
    ("otlp_request", otlp_request),
];

/// Settings read from the first bytes of an input (zero when the input is shorter).
struct Params<'a> {
    head: &'a [u8],
    rest: &'a [u8],
}

impl<'a> Params<'a> {
    fn split(data: &'a [u8], n: usize) -> Self {
        let n = n.min(data.len());
        Self { head: &data[..n], rest: &data[n..] }
    }

    fn byte(&self, i: usize) -> u8 {
        self.head.get(i).copied().unwrap_or(0)
    }
}

/// A fixed receive time, so that a corpus file parses the same on every run.
fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 14, 12, 0, 0).single().unwrap_or_default()
}

/// RFC 6587 framing (octet counting and lines) of a TCP stream arriving in pieces.
///
/// Input: `[limit, chunk, stream...]`. Checks that no frame and nothing buffered exceeds the
/// limit (plus one octet-count header), and that the stream ends with nothing left.
pub fn syslog_framing(data: &[u8]) {
    let p = Params::split(data, 2);
    let max = [1, 16, 64, 256, 1024, 8192][usize::from(p.byte(0) & 0x07) % 6];
    let oversize = if p.byte(0) & 0x08 == 0 { Oversize::Truncate } else { Oversize::Drop };
    let chunk = usize::from(p.byte(1)) + 1;
    // Ten digits and a space.
    let bound = max + 11;
    let mut decoder = SyslogDecoder::new(max, oversize);
    let mut buf = BytesMut::new();
    let check = |frame: &Frame| match frame {
        Frame::Message(m) => assert!(m.len() <= max, "message of {} > {max}", m.len()),
        Frame::Error { kept, .. } => {
            let n = kept.as_ref().map_or(0, Bytes::len);
            assert!(n <= max, "kept {n} > {max}");
        }
    };
    for piece in p.rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(frame) = decoder.decode(&mut buf).expect("decode never fails") {
            check(&frame);
        }
        assert!(buf.len() <= bound, "{} bytes buffered, limit {max}", buf.len());
    }
    while let Some(frame) = decoder.decode_eof(&mut buf).expect("decode never fails") {
        check(&frame);
    }
    assert!(buf.is_empty(), "{} bytes left at the end of the stream", buf.len());
}

/// One syslog message to one event (RFC 5424, RFC 3164 or neither), with the deferred
/// header fields built by serializing the event.
pub fn syslog_parse(data: &[u8]) {
    use crate::sources::syslog::parse::{Zone, to_event};
    let peer = "192.0.2.7:514".parse().ok();
    let zone = Zone::Named(chrono_tz::Europe::Berlin);
    let (event, parsed) = to_event(Bytes::copy_from_slice(data), peer, received(), zone, None);
    let json = serde_json::to_string(&event.view()).expect("an event serializes");
    assert!(event.message().is_some() || json.contains("\"message\""), "no message: {json}");
    if !parsed {
        assert!(json.contains("not a syslog message"), "unparsed without an error: {json}");
    }
}

/// The `http_server` source's body: `Content-Encoding` undone within a limit, then decoded.
///
/// Input: `[flags, content type, body...]`; `flags`: the codec (low two bits: auto, json,
/// text, form), whether the body is decompressed as gzip first (bit 2), with a limit of 4096
/// bytes; the content type is one of a list by the byte's value. Checks that a decompressed
/// body never exceeds the limit, that every event is an object with `@timestamp` and the
/// request's `source.ip`, that text gives one event per non-empty line and a form exactly one.
pub fn http_server_body(data: &[u8]) {
    use crate::sources::http_server::decode::{Codec, RequestFacts, decode};
    use crate::sources::util::http_server::decompress;
    const TYPES: [Option<&str>; 5] = [
        None,
        Some("application/json"),
        Some("application/x-ndjson"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
    ];
    const MAX: usize = 4096;
    let p = Params::split(data, 2);
    let codec = [Codec::Auto, Codec::Json, Codec::Text, Codec::Form][usize::from(p.byte(0) & 3)];
    let content_type = TYPES[usize::from(p.byte(1)) % TYPES.len()];
    let mut body = Bytes::copy_from_slice(p.rest);
    if p.byte(0) & 4 != 0 {
        match decompress(Some("gzip"), body, MAX) {
            Ok(b) => body = b,
            Err(reply) => {
                assert!(reply.status.is_client_error(), "{reply:?}");
                return;
            }
        }
        assert!(body.len() <= MAX, "decompressed {} bytes over the limit", body.len());
    }
    let facts = RequestFacts { peer_ip: Some("192.0.2.7".into()), ..RequestFacts::default() };
    let Ok(events) = decode(codec, content_type, &body, &facts, received()) else { return };
    for e in &events {
        let map = e.as_object().expect("an event is an object");
        assert!(map.contains_key("@timestamp"), "no @timestamp: {e:?}");
        assert!(map.contains_key("source"), "no source.ip: {e:?}");
    }
    match codec.resolve(content_type, &body) {
        Codec::Text => {
            let lines = body.split(|b| *b == b'\n').filter(|l| !l.is_empty() && *l != b"\r");
            assert_eq!(events.len(), lines.count(), "one event per non-empty line");
        }
        Codec::Form => assert_eq!(events.len(), 1, "a form is one record"),
        Codec::Json | Codec::Auto => {}
    }
}

/// The file source's line framer, fed in pieces, taking blocks or lines as the source does.
///
/// Input: `[flags, chunk, stream...]`; `flags`: the limit (low six bits), whether lines over
/// it are dropped, whether whole blocks are tried first. Checks that every line is exactly
/// the bytes at its offsets (less `\r\n`), within the limit, in order, and that every byte
/// of the stream is accounted for.
pub fn line_framer(data: &[u8]) {
    let p = Params::split(data, 2);
    let max = usize::from(p.byte(0) & 0x3f) + 1;
    let oversize = if p.byte(0) & 0x40 == 0 { Oversize::Truncate } else { Oversize::Drop };
    let blocks = p.byte(0) & 0x80 != 0;
    let chunk = usize::from(p.byte(1)) + 1;
    let stream = p.rest;
    let mut framer = LineFramer::new(0, max, oversize);
    let mut lines = Vec::new();
    let mut taken = 0u64;
    for piece in stream.chunks(chunk) {
        framer.extend(piece);
        // Where the block would start: dropped lines and skipped tails end no line.
        let at = framer.consumed_offset() as usize;
        if blocks && let Some((block, count)) = framer.take_block() {
            assert_eq!(&stream[at..at + block.len()], &block[..], "a block is the stream's bytes");
            assert_eq!(count, block.iter().filter(|b| **b == b'\n').count());
            assert!(block.split(|b| *b == b'\n').all(|l| l.len() <= max));
            taken = (at + block.len()) as u64;
            assert_eq!(framer.consumed_offset(), taken);
            continue;
        }
        let before = lines.len();
        framer.drain_lines(&mut lines);
        for line in &lines[before..] {
            check_line(stream, line, max, &mut taken, true);
        }
        assert!(framer.pending_bytes() <= max, "{} bytes pending", framer.pending_bytes());
    }
    if let Some(line) = framer.take_rest() {
        check_line(stream, &line, max, &mut taken, false);
    }
    assert_eq!(framer.consumed_offset(), stream.len() as u64, "every byte accounted for");
}

/// Checks one framed line against the stream it came from; `taken` is where the previous
/// line ended.
fn check_line(
    stream: &[u8],
    line: &crate::sources::util::lines::Line,
    max: usize,
    taken: &mut u64,
    newline: bool,
) {
    assert!(line.start >= *taken && line.end >= line.start, "line out of order: {line:?}");
    assert!(line.end as usize <= stream.len(), "line past the stream: {line:?}");
    assert!(line.bytes.len() <= max, "line of {} > {max}", line.bytes.len());
    let raw = &stream[line.start as usize..line.end as usize];
    if line.truncated {
        assert_eq!(line.bytes.len(), max);
        assert!(raw.starts_with(&line.bytes), "a cut line is the start of its bytes");
    } else {
        let mut text = raw;
        if newline {
            text = text.strip_suffix(b"\n").expect("a complete line ends with a newline");
        }
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        assert_eq!(text, &line.bytes[..], "a line is its bytes less its newline");
    }
    *taken = line.end;
}

/// Multi-line joining of the lines of a stream, in each mode, with time passing between
/// lines.
///
/// Input: `[mode and limit, timeout_ms, text...]`. Checks that every line lands in exactly
/// one message, in order, and that a message grows past `max_bytes` only by its first line.
pub fn multiline(data: &[u8]) {
    let p = Params::split(data, 2);
    let (mode, start, condition) = [
        (Mode::HaltBefore, r"^\d{4}-\d{2}-\d{2}", r"^\d{4}-\d{2}-\d{2}"),
        (Mode::ContinueThrough, r"^\S", r"^\s"),
        (Mode::ContinuePast, r"\\$", r"\\$"),
        (Mode::HaltWith, r"^BEGIN", r";$"),
    ][usize::from(p.byte(0) & 3)];
    let max_bytes = [16, 64, 1024, 1 << 20][usize::from((p.byte(0) >> 2) & 3)];
    // Compiling the patterns dominated each run, so each (mode, timeout) is checked once.
    thread_local! {
        static CHECKED: RefCell<HashMap<(u8, u8), Multiline>> = RefCell::new(HashMap::new());
    }
    let key = (p.byte(0) & 3, p.byte(1));
    let checked = CHECKED.with(|c| {
        c.borrow_mut()
            .entry(key)
            .or_insert_with(|| {
                let config = MultilineConfig {
                    start_pattern: start.into(),
                    condition_pattern: condition.into(),
                    mode,
                    timeout_ms: u64::from(key.1),
                };
                config.check().expect("the patterns compile")
            })
            .clone()
    });
    let mut agg = checked.aggregator::<usize>(max_bytes);
    let lines: Vec<Bytes> =
        p.rest.split(|b| *b == b'\n').map(Bytes::copy_from_slice).collect::<Vec<_>>();
    let t0 = std::time::Instant::now();
    let mut out: Vec<Group<usize>> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let now = t0 + std::time::Duration::from_millis(i as u64);
        agg.flush_expired(now, &mut out);
        agg.push(line.clone(), i, now, &mut out);
    }
    agg.flush(&mut out);
    let mut next = 0;
    for g in &out {
        assert_eq!(g.first, next, "messages in order, no line lost or repeated");
        assert_eq!(g.last + 1 - g.first, g.lines, "a message's lines are contiguous");
        let limit = max_bytes.max(lines[g.first].len());
        assert!(g.bytes.len() <= limit, "message of {} > {limit}", g.bytes.len());
        next = g.last + 1;
    }
    assert_eq!(next, lines.len(), "every line in a message");
}

/// The `kubernetes_logs` decoder over CRI lines (`<time> <stream> <P|F> <message>`).
/// Layout: `[max_merged_line_bytes selector, lines separated by \n...]`.
pub fn kubernetes_cri(data: &[u8]) {
    kubernetes_decoder(crate::sources::kubernetes_logs::decode::Format::Cri, data);
}

/// The `kubernetes_logs` decoder over Docker `json-file` lines. Layout as `kubernetes_cri`.
pub fn kubernetes_docker(data: &[u8]) {
    kubernetes_decoder(crate::sources::kubernetes_logs::decode::Format::Docker, data);
}

/// The Kubernetes API watch stream reader of `kubernetes_logs`: each line one watch event.
/// Layout: lines separated by `\n`. A line that is not an event ends the watch (an error,
/// never a panic); the version reached is one the events carried.
pub fn kubernetes_watch(data: &[u8]) {
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let reached = crate::sources::kubernetes_logs::metadata::apply_watch_lines(&lines);
    // Without escapes in the input, the version reached is written in it as it is.
    if let Ok((Some(version), _)) = reached
        && !version.is_empty()
        && !data.contains(&b'\\')
    {
        let needle = format!("\"{version}\"");
        let seen = data.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(seen, "version {version:?} is not in the input");
    }
}

/// Feeds the lines to a decoder of `format` and checks what it promises: resume points never
/// go back nor past what was read; no message over its limit; nothing held after a flush;
/// and, when nothing is cut, each stream's messages are exactly its records' joined parts.
fn kubernetes_decoder(format: crate::sources::kubernetes_logs::decode::Format, data: &[u8]) {
    use crate::sources::file::LineDecoder;
    use crate::sources::kubernetes_logs::decode::Decoder;
    use crate::sources::util::lines::Line;
    let p = Params::split(data, 1);
    let max = [8, 64, 1024, 1 << 20][usize::from(p.byte(0) & 3)];
    let mut d = Decoder::new(1 << 20, max).with_format(format);
    let fields = crate::event::SharedFields::new(Default::default());
    let (mut out, mut at, mut resume) = (Vec::new(), 0u64, 0u64);
    // The reference: each stream's parts joined, one message per final part.
    let mut expected: [Vec<Vec<u8>>; 2] = Default::default();
    let mut joining: [Vec<u8>; 2] = Default::default();
    let mut whole = true;
    for line in p.rest.split(|b| *b == b'\n') {
        let bytes = Bytes::copy_from_slice(line);
        let end = at + line.len() as u64 + 1;
        match format.parse(&bytes) {
            Ok(r) => {
                let s = r.stream as usize;
                joining[s].extend_from_slice(&r.message);
                whole &= joining[s].len() <= max;
                if !r.partial && !joining[s].is_empty() {
                    expected[s].push(std::mem::take(&mut joining[s]));
                }
            }
            Err(_) => whole = false,
        }
        let before = out.len();
        d.push(Line { bytes, start: at, end, truncated: false }, &fields, &mut out);
        for (r, e) in &out[before..] {
            assert!(*r >= resume && *r <= end, "resume {r} after {resume}, read to {end}");
            resume = *r;
            let len = e.message().map_or(0, Bytes::len);
            assert!(len <= max.max(line.len()), "message of {len} bytes, limit {max}");
        }
        let held = d.pending_start();
        assert!(held.is_none_or(|s| s >= resume && s < end), "held from {held:?}, resume {resume}");
        at = end;
    }
    d.flush(at, &fields, &mut out);
    assert!(d.pending_start().is_none(), "nothing held after a flush");
    for (s, rest) in joining.into_iter().enumerate() {
        if !rest.is_empty() {
            expected[s].push(rest);
        }
    }
    if whole {
        let mut got: [Vec<Vec<u8>>; 2] = Default::default();
        for (_, e) in &out {
            let s = match e.get_top("stream").and_then(|v| v.as_bytes()) {
                Some(b) if b.as_ref() == b"stderr" => 1,
                _ => 0,
            };
            got[s].push(e.message().map(|m| m.to_vec()).unwrap_or_default());
        }
        assert_eq!(got, expected, "each stream's messages are its parts joined");
    }
}

fn metrics() -> ComponentMetrics {
    ComponentMetrics::new(ComponentLabels::new("fuzz", "transform", "fuzz"))
}

/// Builds a transform from its TOML table (without `type`).
fn build<C: DeserializeOwned, T: Transform>(
    toml: &str,
    build: impl FnOnce(&C, &ComponentMetrics) -> Result<T, ConfigIssue>,
) -> Box<dyn Transform> {
    let config: C = toml_edit::de::from_str(toml).expect("the fuzz target's config parses");
    Box::new(build(&config, &metrics()).expect("the fuzz target's config builds"))
}

/// Runs one event with `data` as its `message` through `t`: exactly one event comes out,
/// and it serializes.
fn run_one(t: &mut dyn Transform, data: &[u8]) {
    let mut out = TransformOutput::new(1);
    t.transform(vec![Event::from_message(Bytes::copy_from_slice(data))], &mut out);
    let events: Vec<&Event> = out.primary.iter().chain(out.named.iter().flatten()).collect();
    assert_eq!(events.len(), 1, "one event in, one event out");
    serde_json::to_string(&events[0].view()).expect("an event serializes");
}

/// Declares an entry function that runs its input through one transform, built once per
/// thread from a fixed config.
macro_rules! transform_target {
    ($(#[$meta:meta])* $name:ident, $config:ty, $toml:expr) => {
        $(#[$meta])*
        pub fn $name(data: &[u8]) {
            thread_local! {
                static T: RefCell<Box<dyn Transform>> =
                    RefCell::new(build($toml, |c: &$config, m| c.build(m)));
            }
            T.with(|t| run_one(t.borrow_mut().as_mut(), data));
        }
    };
}

transform_target!(
    /// `parse_json` of the message, merged into the event's root.
    parse_json,
    crate::transforms::parse_json::ParseJsonConfig,
    ""
);

transform_target!(
    /// `parse_grok` with the loghub patterns (as `tests/it/grok_loghub.rs`) tried in turn.
    parse_grok,
    crate::transforms::parse_grok::ParseGrokConfig,
    r#"patterns = [
        '^\[%{DATA:Time}\] \[%{LOGLEVEL:Level}\] %{DATA:Content}\s*$',
        '^%{MONTH:Month} +%{MONTHDAY:Date} %{TIME:Time} %{NOTSPACE:Level} +%{DATA:Component}(?:\[%{POSINT:PID}\])?: +%{DATA:Content}\s*$',
        '^%{INT:Date} %{INT:Time} %{INT:Pid:int} %{LOGLEVEL:Level} %{NOTSPACE:Component}: %{DATA:Content}\s*$',
        '^%{NOTSPACE:Date} %{NOTSPACE:Time} %{LOGLEVEL:Level} \[%{DATA:Process}\] %{NOTSPACE:Component}: %{DATA:Content}\s*$',
        '%{COMBINEDAPACHELOG}',
        '^%{IP:[client][ip]} %{NUMBER:[http][latency]:float} %{WORD:ok:bool}',
    ]"#
);

transform_target!(
    /// `parse_kv` with its defaults (`=` between key and value, spaces between pairs).
    parse_kv,
    crate::transforms::parse_kv::ParseKvConfig,
    ""
);

transform_target!(
    /// `parse_logfmt`.
    parse_logfmt,
    crate::transforms::parse_kv::ParseLogfmtConfig,
    ""
);

transform_target!(
    /// `parse_model_log` with `format = "auto"`: every grammar that claims the line.
    parse_model_log,
    crate::transforms::model_logs::ParseModelLogConfig,
    "timezone = \"Europe/Berlin\""
);

/// `parse_timestamp` with the common formats, in a zone with daylight saving time; an input
/// whose first line starts with `%` is a strftime format (a user's config) for the rest.
pub fn parse_timestamp(data: &[u8]) {
    thread_local! {
        static T: RefCell<Box<dyn Transform>> = RefCell::new(build(
            r#"field = "message"
               timezone = "Europe/Berlin"
               formats = ["rfc3339", "rfc2822", "unix", "unix_ms", "unix_ns",
                          "%Y-%m-%d %H:%M:%S%.f", "%d/%b/%Y:%H:%M:%S %z", "%b %e %H:%M:%S",
                          "%Y-%m-%dT%H:%M:%S%.3f"]"#,
            |c: &crate::transforms::parse_timestamp::ParseTimestampConfig, m| c.build(m),
        ));
    }
    if data.first() == Some(&b'%') {
        let text = String::from_utf8_lossy(data);
        let (format, rest) = text.split_once('\n').unwrap_or((text.as_ref(), ""));
        let parser = crate::transforms::parse_timestamp::TimestampParser::new(
            &[format],
            Some("America/New_York"),
        );
        if let Ok(parser) = parser {
            let _ = parser.with_clock(received).parse_text(rest);
        }
        return;
    }
    T.with(|t| run_one(t.borrow_mut().as_mut(), data));
}

/// The status and body of a response read from an input `STATUS[ N]\nBODY`: `N` is the
/// number of items of the request. Inputs without such a line are a body answered 200.
fn response(data: &[u8]) -> (u16, usize, &[u8]) {
    let (head, body) = match memchr::memchr(b'\n', data) {
        Some(i) if i <= 12 => (&data[..i], &data[i + 1..]),
        _ => return (200, 3, data),
    };
    let head = String::from_utf8_lossy(head);
    let mut words = head.split(' ');
    let status = words.next().and_then(|s| s.parse().ok()).unwrap_or(200);
    let items = words.next().and_then(|s| s.parse().ok()).unwrap_or(3usize).min(64);
    (status, items, body)
}

/// Checks that a verdict names one outcome per item.
fn check_verdict(verdict: &Verdict, items: usize) {
    if let Verdict::Items { outcomes, .. } = verdict {
        assert_eq!(outcomes.len(), items, "one outcome per item");
    }
}

/// The Elasticsearch `_bulk` response classifier. Input as [`response`]; the request's
/// actions alternate `create` and `index`.
pub fn es_bulk_response(data: &[u8]) {
    let (status, items, body) = response(data);
    let ops: Vec<Op> =
        (0..items).map(|i| if i % 2 == 0 { Op::Create } else { Op::Index }).collect();
    let verdict = crate::sinks::elasticsearch::service::classify(status, body, &ops);
    check_verdict(&verdict, items);
}

/// Timestamps of the Loki request's entries: 2023-11-14 22:13:20 UTC plus 0, 1, 2... ns.
const LOKI_T0: i64 = 1_700_000_000_000_000_000;

/// The Loki push response handler. Input as [`response`]; the request's entries alternate
/// between the streams `{app="api", env="prod"}` and `{app="worker"}`, at [`LOKI_T0`] plus
/// their index in nanoseconds.
pub fn loki_response(data: &[u8]) {
    thread_local! {
        static STREAMS: [std::sync::Arc<Stream>; 2] = [
            std::sync::Arc::new(Stream::new(vec![
                ("app".into(), "api".into()),
                ("env".into(), "prod".into()),
            ])),
            std::sync::Arc::new(Stream::new(vec![("app".into(), "worker".into())])),
        ];
    }
    let (status, items, body) = response(data);
    let entries: Vec<LokiEntry> = STREAMS.with(|s| {
        (0..items)
            .map(|i| LokiEntry {
                stream: s[i % 2].clone(),
                timestamp_ns: LOKI_T0 + i as i64,
                line: format!("line {i}"),
                metadata: Vec::new(),
            })
            .collect()
    });
    let refs: Vec<&LokiEntry> = entries.iter().collect();
    let (verdict, unidentified) = crate::sinks::loki::service::classify(status, body, &refs);
    check_verdict(&verdict, items);
    if let Some((_, n)) = unidentified {
        assert!(n > 0, "an empty count of unidentified entries");
    }
}

/// The disk buffer's recovery at start over arbitrary bytes on disk: one segment, and an
/// acknowledged position.
///
/// Input: `[flags, ack offset (u16 LE), segment bytes...]`; `flags`: bit 0 rewrites the
/// checksum of every record that frames (so the fuzzer reaches the event codec), bit 1
/// writes `ack.json` at the offset, bit 2 puts that position in a later segment, bit 3
/// writes `ack.json` as the segment's bytes instead (an unreadable position). Checks that
/// recovery never fails, and that what it kept then reads back with no damage and decodes.
pub fn disk_buffer_recovery(data: &[u8]) {
    use crate::buffers::disk::segment::{self, Position};
    let p = Params::split(data, 3);
    let flags = p.byte(0);
    let mut bytes = p.rest.to_vec();
    if flags & 1 != 0 {
        fix_checksums(&mut bytes);
    }
    let dir = scratch_dir();
    std::fs::write(dir.join(segment::segment_name(1)), &bytes).expect("write the segment");
    if flags & 2 != 0 {
        let ack = Position {
            segment: if flags & 4 == 0 { 1 } else { 2 },
            offset: u64::from(u16::from_le_bytes([p.byte(1), p.byte(2)])),
        };
        std::fs::write(dir.join(segment::ACK_FILE), serde_json::to_vec(&ack).expect("json"))
            .expect("write ack.json");
    } else if flags & 8 != 0 {
        std::fs::write(dir.join(segment::ACK_FILE), &bytes).expect("write ack.json");
    }
    let result = std::panic::catch_unwind(|| check_recovery(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn check_recovery(dir: &Path) {
    use crate::buffers::disk::{codec, segment};
    let (start, segments, records) =
        crate::buffers::disk::recover_for_fuzzing(dir).expect("recovery never fails");
    let mut read = 0;
    for (id, len) in segments {
        let path = dir.join(segment::segment_name(id));
        assert_eq!(std::fs::metadata(&path).expect("kept segment").len(), len);
        let from = if id == start.segment { start.offset.min(len) } else { 0 };
        let scan = segment::scan(&path, from, false).expect("scan");
        assert!(scan.corruption.is_empty(), "damage left after repair: {:?}", scan.corruption);
        let mut file = std::fs::File::open(&path).expect("open");
        for r in segment::read_records(&mut file, from, len, u64::MAX).expect("read") {
            let payload = r.payload.expect("a repaired segment reads back whole");
            // A record whose checksum holds may still not decode: an error, never a panic.
            let _ = codec::decode_events(&payload);
            read += 1;
        }
    }
    assert_eq!(read, records, "recovery counted the records the reader reads");
}

/// Rewrites the checksum of each record that frames, from the start.
fn fix_checksums(bytes: &mut [u8]) {
    let mut at = 0usize;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let end = at + 8 + len as usize;
        if len == 0 || end > bytes.len() {
            return;
        }
        let crc = crc32fast::hash(&bytes[at + 8..end]);
        bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}

/// A fresh directory per call (calls may run on several threads of one process).
fn scratch_dir() -> std::path::PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("weir-fuzz-buffer-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// The config loader over arbitrary text, with validation (`weir validate`, `[[tests]]`
/// included): every error has a message, and errors and warnings print.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match crate::config::load_from_str("fuzz.toml", &text) {
        Ok(config) => {
            for w in &config.warnings {
                let _ = w.to_string();
            }
            for e in crate::config::unit_test::check(&config) {
                assert!(!e.to_string().is_empty());
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "a failed load names its errors");
            for e in &errors {
                assert!(!e.to_string().is_empty());
            }
        }
    }
}

/// An OTLP logs request: an OTLP/HTTP body (`Content-Encoding` decoding within a limit) or
/// an OTLP/gRPC call's body (the length-prefixed frame, its compression undone within the
/// limit); the protobuf or JSON decoder (gRPC's is the same protobuf decoder); then the
/// mapping of its records to events.
///
/// Input: `[flags, body...]`; `flags` bit 0: JSON (else protobuf), bit 1: the body is gzip
/// (`grpc-encoding: gzip` for gRPC), bit 2: a gRPC call body (protobuf only).
/// Checks that a decoded body stays within the limit, that every record becomes exactly one
/// event whose root is an object with a `@timestamp`, and that each event serializes.
pub fn otlp_request(data: &[u8]) {
    use crate::sources::opentelemetry::{convert, decode, grpc};
    use crate::sources::util::http_server;
    const LIMIT: usize = 1 << 20;
    let p = Params::split(data, 1);
    let grpc_call = p.byte(0) & 4 == 4;
    let encoding = if p.byte(0) & 1 == 1 && !grpc_call {
        decode::Encoding::Json
    } else {
        decode::Encoding::Protobuf
    };
    let content_encoding = (p.byte(0) & 2 == 2).then_some("gzip");
    let raw = Bytes::copy_from_slice(p.rest);
    let body = if grpc_call {
        let mut headers = hyper::HeaderMap::new();
        if let Some(coding) = content_encoding {
            headers.insert("grpc-encoding", hyper::header::HeaderValue::from_static(coding));
        }
        grpc::unframe(raw, &headers, LIMIT).map_err(drop)
    } else {
        http_server::decompress(content_encoding, raw, LIMIT).map_err(drop)
    };
    let Ok(body) = body else {
        return;
    };
    assert!(body.len() <= LIMIT, "decoded body of {} bytes > {LIMIT}", body.len());
    let Ok(request) = decode::request(encoding, &body) else { return };
    let records = decode::records(&request);
    let events = convert::events(request, received());
    assert_eq!(events.len(), records, "one event per log record");
    for event in &events {
        assert!(event.fields().is_object(), "the root of an event is an object");
        assert!(event.timestamp().is_some(), "every event has a @timestamp");
        serde_json::to_string(&event.view()).expect("an event serializes");
    }
}
