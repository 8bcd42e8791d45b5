//! The container runtimes' log formats, as the kubelet's `/var/log/pods` holds them.
//!
//! - **CRI** (containerd, CRI-O; the [CRI logging format]): one line per record,
//!   `<RFC 3339 time> <stdout|stderr> <tags> <message>`, where the first tag is `P` for a
//!   partial record (the runtime split a long line, 16 KiB by default) and `F` for the last
//!   part of one. Further tags may follow, separated by `:`.
//! - **Docker `json-file`** (Docker Engine through cri-dockerd): one JSON object per record,
//!   `{"log": "...", "stream": "stdout", "time": "..."}`; a record whose `log` does not end
//!   with a newline is a part of a longer line (Docker splits at 16 KiB).
//!
//! Which one a file holds is decided by its first line (`{` is Docker's) and kept. Parts are
//! joined per stream (stdout and stderr are written to one file by two writers, so their parts
//! can interleave) up to `max_merged_line_bytes`; a line that fits neither format becomes an
//! event of its own, whole, with `error.message` saying why.
//!
//! [CRI logging format]: https://github.com/kubernetes/design-proposals-archive/blob/main/node/kubelet-cri-logging.md

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use vrl::value::Value;

use crate::event::{Event, SharedFields};
use crate::sources::file::LineDecoder;
use crate::sources::util::group_event;
use crate::sources::util::lines::Line;
use crate::sources::util::multiline::Group;

/// Which of the two streams of a container a record was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn parse(s: &[u8]) -> Option<Self> {
        match s {
            b"stdout" => Some(Stream::Stdout),
            b"stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// One record of a runtime's log file.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub time: DateTime<Utc>,
    pub stream: Stream,
    /// The line goes on in the next record of the same stream.
    pub partial: bool,
    pub message: Bytes,
}

/// The file's format, known from its first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Cri,
    Docker,
}

impl Format {
    pub fn detect(first_line: &[u8]) -> Self {
        if first_line.first() == Some(&b'{') { Format::Docker } else { Format::Cri }
    }

    /// Parses one line; the error names the format the line is not in, and why.
    pub fn parse(self, line: &Bytes) -> Result<Record, String> {
        match self {
            Format::Cri => parse_cri(line).map_err(|e| format!("not a CRI log line: {e}")),
            Format::Docker => {
                parse_docker(line).map_err(|e| format!("not a Docker json-file log line: {e}"))
            }
        }
    }
}

fn time(text: &[u8]) -> Result<DateTime<Utc>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "time is not UTF-8".to_string())?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("time `{}` is not RFC 3339: {e}", text.escape_debug()))
}

/// Parses a CRI line: `<time> <stream> <tags> <message>` (the message may be empty).
pub fn parse_cri(line: &Bytes) -> Result<Record, String> {
    let mut fields = line.splitn(4, |b| *b == b' ');
    let (Some(t), Some(s), Some(tags)) = (fields.next(), fields.next(), fields.next()) else {
        return Err("expected `<time> <stream> <tag> <message>`".into());
    };
    let time = time(t)?;
    let stream = Stream::parse(s).ok_or("stream is neither stdout nor stderr")?;
    let partial = match tags.split(|b| *b == b':').next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return Err("the first tag is neither P nor F".into()),
    };
    // The message starts after the third space; a line ending at its tag has none.
    let at = t.len() + s.len() + tags.len() + 3;
    let message = if at <= line.len() { line.slice(at..) } else { Bytes::new() };
    Ok(Record { time, stream, partial, message })
}

#[derive(serde::Deserialize)]
struct DockerLine {
    log: String,
    stream: String,
    time: String,
}

/// Parses a Docker `json-file` line; `log` without its final newline is a partial record.
pub fn parse_docker(line: &Bytes) -> Result<Record, String> {
    let d: DockerLine = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let time = time(d.time.as_bytes())?;
    let stream = Stream::parse(d.stream.as_bytes()).ok_or("stream is neither stdout nor stderr")?;
    let mut log = d.log;
    let partial = !log.ends_with('\n');
    if !partial {
        log.pop();
    }
    Ok(Record { time, stream, partial, message: Bytes::from(log) })
}

/// A line being joined from its parts.
struct Joining {
    buf: BytesMut,
    time: DateTime<Utc>,
    /// Offset of the first part's line.
    start: u64,
    truncated: bool,
}

/// Decodes one file's lines into events: `message`, `@timestamp` (the runtime's time),
/// `stream`, and the file's shared fields.
pub struct Decoder {
    format: Option<Format>,
    max_bytes: usize,
    /// The limit of one line as the runtime wrote it (for the message of a cut line).
    max_line_bytes: usize,
    /// The line in progress of stdout and of stderr.
    joining: [Option<Joining>; 2],
    /// The pod's metadata from the API, when it is watched.
    enricher: Option<super::metadata::Enricher>,
    /// Counts lines in neither format (`parse_failed`).
    metrics: Option<crate::metrics::ComponentMetrics>,
}

impl Decoder {
    pub fn new(max_line_bytes: usize, max_merged_line_bytes: usize) -> Self {
        let max_bytes = max_merged_line_bytes;
        Self {
            format: None,
            max_bytes,
            max_line_bytes,
            joining: [None, None],
            enricher: None,
            metrics: None,
        }
    }

    /// A decoder that counts the lines it cannot parse in `metrics`.
    pub fn with_metrics(mut self, metrics: crate::metrics::ComponentMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// A decoder whose events get their pod's metadata from `enricher`.
    pub fn with_enricher(mut self, enricher: super::metadata::Enricher) -> Self {
        self.enricher = Some(enricher);
        self
    }

    /// The fields for the next events (the pod's, once known, else the path's), and whether
    /// the pod asked not to be read.
    fn fields(&mut self, path_fields: &Arc<SharedFields>) -> (Arc<SharedFields>, bool) {
        match self.enricher.as_mut().map(super::metadata::Enricher::current) {
            Some((Some(f), excluded)) => (Arc::clone(f), excluded),
            Some((None, excluded)) => (Arc::clone(path_fields), excluded),
            None => (Arc::clone(path_fields), false),
        }
    }

    /// A decoder of files known to be in `format` (instead of detecting it from the first line).
    pub fn with_format(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }

    /// Where a restart must resume after everything emitted so far is delivered.
    fn resume(&self, line_end: u64) -> u64 {
        self.pending_start().map_or(line_end, |s| s.min(line_end))
    }

    fn join(&mut self, r: Record, line: &Line) -> Option<Joining> {
        let slot = &mut self.joining[r.stream as usize];
        let j = slot.get_or_insert_with(|| Joining {
            buf: BytesMut::new(),
            time: r.time,
            start: line.start,
            truncated: false,
        });
        j.truncated |= line.truncated;
        let room = self.max_bytes.saturating_sub(j.buf.len());
        if r.message.len() > room {
            j.truncated = true;
        }
        j.buf.extend_from_slice(&r.message[..r.message.len().min(room)]);
        if r.partial { None } else { slot.take() }
    }

    fn event(&self, j: Joining, stream: Stream, fields: &Arc<SharedFields>) -> Event {
        let group = Group::line(j.buf.freeze(), (), j.truncated);
        let mut e = group_event(group, j.time, fields, self.max_bytes);
        e.insert_key("stream", Value::from(stream.name()));
        e.grow(16);
        e
    }

    /// The event of a line that is not a record of the file's format: the line whole.
    fn unparsed(&self, line: Line, why: String, fields: &Arc<SharedFields>) -> Event {
        let group = Group::line(line.bytes, (), line.truncated);
        let mut e = group_event(group, Utc::now(), fields, self.max_line_bytes);
        if let Ok(p) = crate::event::parse_path("error.message") {
            e.insert(&p, Value::from(why));
        }
        e
    }
}

impl LineDecoder for Decoder {
    fn push(&mut self, line: Line, fields: &Arc<SharedFields>, out: &mut Vec<(u64, Event)>) {
        let format = *self.format.get_or_insert_with(|| Format::detect(&line.bytes));
        let (fields, excluded) = self.fields(fields);
        let end = line.end;
        match format.parse(&line.bytes) {
            Ok(r) => {
                let stream = r.stream;
                if let Some(j) = self.join(r, &line)
                    && !j.buf.is_empty()
                    && !excluded
                {
                    let e = self.event(j, stream, &fields);
                    out.push((self.resume(end), e));
                }
            }
            Err(_) if excluded => {}
            Err(why) => {
                if let Some(m) = &self.metrics {
                    use crate::metrics::{Stage, error_type};
                    m.error(error_type::PARSE_FAILED, Stage::Receiving);
                }
                let e = self.unparsed(line, why, &fields);
                out.push((self.resume(end), e));
            }
        }
    }

    fn pending_start(&self) -> Option<u64> {
        self.joining.iter().flatten().map(|j| j.start).min()
    }

    fn flush(&mut self, position: u64, fields: &Arc<SharedFields>, out: &mut Vec<(u64, Event)>) {
        let (fields, excluded) = self.fields(fields);
        let fields = &fields;
        let mut held: Vec<(Stream, Joining)> = Vec::new();
        for (i, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
            if let Some(j) = self.joining[i].take() {
                held.push((stream, j));
            }
        }
        held.sort_by_key(|(_, j)| j.start);
        let resumes: Vec<u64> =
            held.iter().skip(1).map(|(_, j)| j.start).chain([position]).collect();
        for ((stream, j), resume) in held.into_iter().zip(resumes) {
            if !j.buf.is_empty() && !excluded {
                let e = self.event(j, stream, fields);
                out.push((resume, e));
            }
        }
    }
}
