//! Multi-line aggregation: joins the lines of one message (a Python traceback, a Java stack
//! trace) into one event, with the modes Vector's users know.
//!
//! ```toml
//! multiline.start_pattern = '^\d{4}-\d{2}-\d{2}'
//! multiline.condition_pattern = '^\d{4}-\d{2}-\d{2}'
//! multiline.mode = "halt_before"
//! multiline.timeout_ms = 1000
//! ```
//! - `continue_through`: lines matching the condition continue the message;
//! - `continue_past`: as above, plus the first line that does not match;
//! - `halt_before`: lines not matching the condition continue the message; a match starts the
//!   next one;
//! - `halt_with`: lines continue the message up to and including one matching the condition.
//!
//! A message is flushed when it is complete, after `timeout_ms` without a new line, or when it
//! reaches `max_bytes` (so a runaway message cannot grow without bound).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use regex::bytes::Regex;
use serde::Deserialize;

use crate::error::ConfigIssue;

/// `multiline` options of a line source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// A line matching this may start a message.
    pub start_pattern: String,
    /// Used with `mode` to decide whether the next line belongs to the message.
    pub condition_pattern: String,
    /// How `condition_pattern` decides where a message ends: `continue_through` (matching
    /// lines continue it), `continue_past` (as that, plus the first line that does not match),
    /// `halt_before` (a matching line starts the next message), `halt_with` (a matching line
    /// ends this one). Required.
    pub mode: Mode,
    /// Flush a message after this long without a new line. Default 1000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    1000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    ContinueThrough,
    ContinuePast,
    HaltBefore,
    HaltWith,
}

impl MultilineConfig {
    /// Compiles the patterns, reporting each that does not compile.
    pub fn check(&self) -> Result<Multiline, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut compile = |key: &str, pattern: &str| {
            Regex::new(pattern)
                .map_err(|e| {
                    issues.push(ConfigIssue::field(key, format!("invalid regular expression: {e}")))
                })
                .ok()
        };
        let start = compile("multiline.start_pattern", &self.start_pattern);
        let condition = compile("multiline.condition_pattern", &self.condition_pattern);
        match (start, condition) {
            (Some(start), Some(condition)) => Ok(Multiline {
                start,
                condition,
                mode: self.mode,
                timeout: Duration::from_millis(self.timeout_ms),
            }),
            _ => Err(issues),
        }
    }
}

/// Checked `multiline` options: what every stream's [`Aggregator`] starts from.
#[derive(Debug, Clone)]
pub struct Multiline {
    start: Regex,
    condition: Regex,
    mode: Mode,
    timeout: Duration,
}

impl Multiline {
    /// An aggregator for one stream, holding at most `max_bytes` of a message.
    pub fn aggregator<T: Copy>(&self, max_bytes: usize) -> Aggregator<T> {
        Aggregator {
            start: self.start.clone(),
            condition: self.condition.clone(),
            mode: self.mode,
            timeout: self.timeout,
            max_bytes: max_bytes.max(1),
            pending: None,
        }
    }
}

/// A complete message: its text and the tags of its first and last lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group<T> {
    pub bytes: Bytes,
    pub first: T,
    pub last: T,
    pub lines: usize,
    /// Text was cut: one of its lines was over `max_line_bytes`, or the message over its
    /// limit (lines past the limit are left out).
    pub truncated: bool,
}

impl<T: Copy> Group<T> {
    /// A message of one line.
    pub fn line(bytes: Bytes, tag: T, truncated: bool) -> Self {
        Self { bytes, first: tag, last: tag, lines: 1, truncated }
    }
}

struct Pending<T> {
    buf: BytesMut,
    first_line: Bytes,
    first: T,
    last: T,
    lines: usize,
    truncated: bool,
    updated: Instant,
}

/// Aggregates the lines of one stream. `T` tags each line (a file offset range, say).
pub struct Aggregator<T> {
    start: Regex,
    condition: Regex,
    mode: Mode,
    timeout: Duration,
    max_bytes: usize,
    pending: Option<Pending<T>>,
}

impl<T: Copy> Aggregator<T> {
    /// Feeds one line; complete messages are pushed to `out`.
    pub fn push(&mut self, line: Bytes, tag: T, now: Instant, out: &mut Vec<Group<T>>) {
        self.push_marked(line, false, tag, now, out);
    }

    /// As [`Aggregator::push`], for a line that may have been cut (`truncated`).
    pub fn push_marked(
        &mut self,
        line: Bytes,
        truncated: bool,
        tag: T,
        now: Instant,
        out: &mut Vec<Group<T>>,
    ) {
        if let Some(p) = self.pending.as_mut() {
            let matches = self.condition.is_match(&line);
            let (append, flush_after, flush_before) = match self.mode {
                Mode::ContinueThrough => (matches, false, !matches),
                Mode::ContinuePast => (true, !matches, false),
                Mode::HaltBefore => (!matches, false, matches),
                Mode::HaltWith => (true, matches, false),
            };
            if append {
                if p.buf.is_empty() {
                    p.buf.extend_from_slice(&p.first_line);
                }
                if p.buf.len() + 1 + line.len() <= self.max_bytes {
                    p.buf.extend_from_slice(b"\n");
                    p.buf.extend_from_slice(&line);
                } else {
                    p.truncated = true;
                }
                p.truncated |= truncated;
                p.last = tag;
                p.lines += 1;
                p.updated = now;
                if flush_after || p.buf.len() >= self.max_bytes {
                    self.flush(out);
                }
                return;
            }
            if flush_before {
                self.flush(out);
            }
        }
        // No message in progress: this line starts one, or stands alone.
        if self.start.is_match(&line) {
            self.pending = Some(Pending {
                buf: BytesMut::new(),
                first_line: line,
                first: tag,
                last: tag,
                lines: 1,
                truncated,
                updated: now,
            });
        } else {
            out.push(Group::line(line, tag, truncated));
        }
    }

    /// Flushes a message that has waited longer than the timeout.
    pub fn flush_expired(&mut self, now: Instant, out: &mut Vec<Group<T>>) {
        if self.pending.as_ref().is_some_and(|p| now.duration_since(p.updated) >= self.timeout) {
            self.flush(out);
        }
    }

    /// Flushes whatever is pending (end of stream, shutdown).
    pub fn flush(&mut self, out: &mut Vec<Group<T>>) {
        if let Some(p) = self.pending.take() {
            // A one-line message keeps the line's own bytes: no copy.
            let bytes = if p.buf.is_empty() { p.first_line } else { p.buf.freeze() };
            out.push(Group {
                bytes,
                first: p.first,
                last: p.last,
                lines: p.lines,
                truncated: p.truncated,
            });
        }
    }

    /// The tag of the first line held back, if a message is in progress.
    pub fn pending_first(&self) -> Option<T> {
        self.pending.as_ref().map(|p| p.first)
    }

    /// When the message in progress will time out.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.updated + self.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(mode: &str, start: &str, cond: &str) -> Aggregator<u32> {
        let c: MultilineConfig = toml_edit::de::from_str(&format!(
            "start_pattern = '{start}'\ncondition_pattern = '{cond}'\nmode = \"{mode}\""
        ))
        .unwrap();
        c.check().unwrap().aggregator(1 << 20)
    }

    fn run(a: &mut Aggregator<u32>, lines: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        let now = Instant::now();
        for (i, l) in lines.iter().enumerate() {
            a.push(Bytes::copy_from_slice(l.as_bytes()), i as u32, now, &mut out);
        }
        a.flush(&mut out);
        out.into_iter().map(|g| String::from_utf8(g.bytes.to_vec()).unwrap()).collect()
    }

    #[test]
    fn python_traceback_is_one_event() {
        let mut a = agg("halt_before", r"^\d{4}-", r"^\d{4}-");
        let got = run(
            &mut a,
            &[
                "2024-01-01 10:00:00,000 [INFO] app: ok",
                "2024-01-01 10:00:01,000 [ERROR] app: prediction failed",
                "Traceback (most recent call last):",
                "  File \"model.py\", line 3, in predict",
                "ValueError: bad input",
                "2024-01-01 10:00:02,000 [INFO] app: next",
            ],
        );
        assert_eq!(got.len(), 3);
        assert!(
            got[1].ends_with("ValueError: bad input") && got[1].lines().count() == 4,
            "{got:?}"
        );
    }

    #[test]
    fn other_modes() {
        let mut a = agg("continue_through", r"^\S", r"^\s");
        assert_eq!(run(&mut a, &["a", " b", " c", "d", "e", " f"]), ["a\n b\n c", "d", "e\n f"]);
        let mut a = agg("continue_past", r"\\$", r"\\$");
        assert_eq!(run(&mut a, &["a \\", "b \\", "c", "d"]), ["a \\\nb \\\nc", "d"]);
        let mut a = agg("halt_with", r"^BEGIN", r";$");
        assert_eq!(run(&mut a, &["BEGIN x", "y;", "z"]), ["BEGIN x\ny;", "z"]);
    }

    #[test]
    fn timeout_flushes_and_tags_track_lines() {
        let mut a = agg("halt_before", r"^\d", r"^\d");
        let t0 = Instant::now();
        let mut out = Vec::new();
        a.push(Bytes::from_static(b"1 start"), 10, t0, &mut out);
        a.push(Bytes::from_static(b"  more"), 20, t0, &mut out);
        assert_eq!(a.pending_first(), Some(10));
        a.flush_expired(t0 + Duration::from_millis(999), &mut out);
        assert!(out.is_empty());
        a.flush_expired(t0 + Duration::from_secs(1), &mut out);
        assert_eq!((out[0].first, out[0].last, out[0].lines), (10, 20, 2));
        assert_eq!(a.pending_first(), None);
    }

    #[test]
    fn a_cut_line_or_a_message_over_its_limit_marks_the_message() {
        let c: MultilineConfig = toml_edit::de::from_str(
            "start_pattern = '^\\d'\ncondition_pattern = '^\\d'\nmode = \"halt_before\"",
        )
        .unwrap();
        let mut a = c.check().unwrap().aggregator::<u32>(12);
        let t0 = Instant::now();
        let mut out = Vec::new();
        for (i, (line, cut)) in
            [("1 a", false), (" b", true), ("2 c", false), (" more than fits", false), ("3", false)]
                .into_iter()
                .enumerate()
        {
            a.push_marked(Bytes::from_static(line.as_bytes()), cut, i as u32, t0, &mut out);
        }
        a.flush(&mut out);
        let marks: Vec<(&[u8], bool)> = out.iter().map(|g| (&g.bytes[..], g.truncated)).collect();
        assert_eq!(marks, [(&b"1 a\n b"[..], true), (b"2 c", true), (b"3", false)]);
    }
}
