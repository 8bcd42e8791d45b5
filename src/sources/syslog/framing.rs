//! RFC 6587 framing of syslog over TCP, as a `tokio-util` [`Decoder`].
//!
//! Two framings exist and senders mix them (rsyslog forwards octet-counted, `logger` and many
//! appliances send newline-terminated messages), so the framing is detected per message:
//!
//! - **Octet counting** (RFC 6587 section 3.4.1): `MSG-LEN SP SYSLOG-MSG`, where `MSG-LEN` is a
//!   non-zero digit followed by at most nine more digits. A frame starts this way when its first
//!   byte is `1`..`9`.
//! - **Non-transparent framing** (section 3.4.2): the message ends at a line feed; a `\r` before
//!   it is removed. Every other frame is read this way (a syslog message starts with `<`).
//!
//! A frame that starts with a digit but has no valid length header (`2024-05-01 ...`, `0 x`)
//! is read as a line and reported as [`FramingError::BadOctetCount`]: nothing is lost, the
//! caller counts the problem. Blank lines between frames are skipped.
//!
//! Invariant: the decoder never holds more than `max_message_bytes` plus a header of one
//! message. A message longer than that is cut to its first `max_message_bytes` bytes (or
//! dropped, with `oversize = "drop"`), reported as [`FramingError::TooLong`], and the rest of
//! it is skipped as it arrives, so the connection carries on with the next message.
//!
//! tokio-util has codecs for lines and for binary length prefixes but none for ASCII octet
//! counts mixed with lines, hence this small state machine.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::sources::util::lines::Oversize;

/// Most digits of an octet count (RFC 6587 allows any number; ten cover 9.9 GB).
const MAX_COUNT_DIGITS: usize = 10;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole message, without its header or its line feed.
    Message(Bytes),
    /// A framing problem, with what could be kept of the message, if anything.
    Error { error: FramingError, kept: Option<Bytes> },
}

/// What was wrong with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// The message was longer than `max_message_bytes`: `length` is the declared length of an
    /// octet-counted frame, `None` for a line (its length is not known when it is cut).
    TooLong { length: Option<u64> },
    /// The frame starts with a digit but not with a valid octet count; it was read as a line.
    BadOctetCount,
    /// The connection ended inside an octet-counted frame: `received` of `declared` bytes.
    Incomplete { received: usize, declared: u64 },
}

impl FramingError {
    /// A sentence for logs and for the event's `error.message`.
    pub fn describe(&self, max: usize, oversize: Oversize) -> String {
        let action = match oversize {
            Oversize::Truncate => "cut to its first",
            Oversize::Drop => "dropped; the limit is",
        };
        match self {
            Self::TooLong { length: Some(n) } => {
                format!("octet-counted frame of {n} bytes {action} {max} bytes (max_message_bytes)")
            }
            Self::TooLong { length: None } => {
                format!("message longer than max_message_bytes {action} {max} bytes")
            }
            Self::BadOctetCount => {
                "frame starts with a digit but has no valid octet count; read as a line".to_string()
            }
            Self::Incomplete { received, declared } => format!(
                "connection closed inside an octet-counted frame: {received} of {declared} bytes"
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a frame.
    Start,
    /// Skipping the rest of an over-long octet-counted frame.
    SkipBytes(u64),
    /// Skipping the rest of an over-long line, up to its line feed.
    SkipLine,
}

/// The RFC 6587 decoder of one connection.
#[derive(Debug)]
pub struct SyslogDecoder {
    max: usize,
    oversize: Oversize,
    state: State,
    /// How far the current line has been searched for a line feed (so that a long line that
    /// arrives in pieces is not searched from its start every time).
    scanned: usize,
}

/// How the frame at the start of the buffer is framed.
enum Header {
    /// An octet count: header length (digits and space) and declared message length.
    Count { header: usize, length: u64 },
    /// Not enough bytes yet to tell.
    NeedMore,
    /// A line; `digit_first` when it looked like a count but was not one.
    Line { digit_first: bool },
}

impl SyslogDecoder {
    pub fn new(max_message_bytes: usize, oversize: Oversize) -> Self {
        Self { max: max_message_bytes.max(1), oversize, state: State::Start, scanned: 0 }
    }

    /// Applies another source instance's limits to a connection it takes over, from the
    /// next frame on.
    pub fn set_limits(&mut self, max_message_bytes: usize, oversize: Oversize) {
        self.max = max_message_bytes.max(1);
        self.oversize = oversize;
    }

    fn header(buf: &[u8]) -> Header {
        match buf.first() {
            Some(b'1'..=b'9') => {}
            Some(b'0') => return Header::Line { digit_first: true },
            _ => return Header::Line { digit_first: false },
        }
        let digits =
            buf.iter().take(MAX_COUNT_DIGITS + 1).take_while(|b| b.is_ascii_digit()).count();
        if digits > MAX_COUNT_DIGITS {
            return Header::Line { digit_first: true };
        }
        match buf.get(digits) {
            None => Header::NeedMore,
            Some(b' ') => {
                // At most ten ASCII digits always fit in a u64.
                let length = buf[..digits].iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
                Header::Count { header: digits + 1, length }
            }
            Some(_) => Header::Line { digit_first: true },
        }
    }

    fn too_long(&self, length: Option<u64>, kept: Option<Bytes>) -> Frame {
        Frame::Error { error: FramingError::TooLong { length }, kept }
    }
}

impl Decoder for SyslogDecoder {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        loop {
            match self.state {
                State::SkipBytes(remaining) => {
                    let n = remaining.min(buf.len() as u64);
                    // `n` is at most `buf.len()`, a usize.
                    buf.advance(n as usize);
                    if n < remaining {
                        self.state = State::SkipBytes(remaining - n);
                        return Ok(None);
                    }
                    self.state = State::Start;
                }
                State::SkipLine => match memchr::memchr(b'\n', buf) {
                    Some(i) => {
                        buf.advance(i + 1);
                        self.state = State::Start;
                    }
                    None => {
                        buf.clear();
                        return Ok(None);
                    }
                },
                State::Start => {
                    let blank = buf.iter().take_while(|b| matches!(b, b'\n' | b'\r')).count();
                    if blank > 0 {
                        buf.advance(blank);
                        self.scanned = 0;
                    }
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    match Self::header(buf) {
                        Header::NeedMore => return Ok(None),
                        Header::Count { header, length } => {
                            return Ok(self.octet_counted(buf, header, length));
                        }
                        Header::Line { digit_first } => {
                            return Ok(self.line(buf, digit_first));
                        }
                    }
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        if self.state != State::Start || buf.is_empty() {
            buf.clear();
            return Ok(None);
        }
        // What is left is an unfinished frame: a last line without its line feed, or an
        // octet-counted frame cut short. Either way its bytes are kept.
        self.scanned = 0;
        let rest = buf.split().freeze();
        Ok(Some(match Self::header(&rest) {
            Header::Count { header, length } => Frame::Error {
                error: FramingError::Incomplete { received: rest.len() - header, declared: length },
                kept: Some(rest.slice(header..)),
            },
            Header::Line { digit_first: true } => {
                Frame::Error { error: FramingError::BadOctetCount, kept: Some(trim_cr(rest)) }
            }
            Header::Line { digit_first: false } | Header::NeedMore => {
                let rest = trim_cr(rest);
                // Only digits still waiting for their space can be longer than the limit (up
                // to ten): they are cut as any other message.
                if rest.len() > self.max {
                    return Ok(Some(match self.oversize {
                        Oversize::Truncate => self.too_long(None, Some(rest.slice(..self.max))),
                        Oversize::Drop => self.too_long(None, None),
                    }));
                }
                Frame::Message(rest)
            }
        }))
    }
}

impl SyslogDecoder {
    fn octet_counted(&mut self, buf: &mut BytesMut, header: usize, length: u64) -> Option<Frame> {
        if length <= self.max as u64 {
            // `length` is at most `max`, a usize.
            let total = header + length as usize;
            if buf.len() < total {
                buf.reserve(total - buf.len());
                return None;
            }
            let mut frame = buf.split_to(total);
            frame.advance(header);
            return Some(Frame::Message(frame.freeze()));
        }
        match self.oversize {
            Oversize::Truncate => {
                if buf.len() < header + self.max {
                    buf.reserve(header + self.max - buf.len());
                    return None;
                }
                let mut kept = buf.split_to(header + self.max);
                kept.advance(header);
                self.state = State::SkipBytes(length - self.max as u64);
                Some(self.too_long(Some(length), Some(kept.freeze())))
            }
            Oversize::Drop => {
                buf.advance(header);
                self.state = State::SkipBytes(length);
                Some(self.too_long(Some(length), None))
            }
        }
    }

    fn line(&mut self, buf: &mut BytesMut, digit_first: bool) -> Option<Frame> {
        // Search at most one byte past the limit: a line feed further away ends a line that is
        // too long anyway.
        let end = buf.len().min(self.max + 1);
        let from = self.scanned.min(end);
        match memchr::memchr(b'\n', &buf[from..end]) {
            Some(i) => {
                let line = buf.split_to(from + i + 1);
                self.scanned = 0;
                let mut line = line.freeze();
                line.truncate(line.len() - 1);
                let line = trim_cr(line);
                if line.len() > self.max {
                    // Exactly one byte over: the line feed was found at `max + 1`.
                    return Some(match self.oversize {
                        Oversize::Truncate => self.too_long(None, Some(line.slice(..self.max))),
                        Oversize::Drop => self.too_long(None, None),
                    });
                }
                Some(if digit_first {
                    Frame::Error { error: FramingError::BadOctetCount, kept: Some(line) }
                } else {
                    Frame::Message(line)
                })
            }
            None if buf.len() > self.max => {
                self.scanned = 0;
                self.state = State::SkipLine;
                let kept = buf.split_to(self.max).freeze();
                Some(match self.oversize {
                    Oversize::Truncate => self.too_long(None, Some(kept)),
                    Oversize::Drop => self.too_long(None, None),
                })
            }
            None => {
                self.scanned = end;
                None
            }
        }
    }
}

fn trim_cr(mut line: Bytes) -> Bytes {
    if line.last() == Some(&b'\r') {
        line.truncate(line.len() - 1);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `chunk` bytes, then ends the stream; returns every frame.
    fn decode_all(input: &[u8], chunk: usize, max: usize, oversize: Oversize) -> Vec<Frame> {
        let mut decoder = SyslogDecoder::new(max, oversize);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(f) = decoder.decode(&mut buf).unwrap() {
                out.push(f);
            }
            assert!(buf.len() <= max + MAX_COUNT_DIGITS + 1 + chunk, "buffer grew past the limit");
        }
        while let Some(f) = decoder.decode_eof(&mut buf).unwrap() {
            out.push(f);
        }
        out
    }

    fn msg(s: &str) -> Frame {
        Frame::Message(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn mixed_framings_in_any_chunking() {
        let input = b"<13>one\n17 <13>two\nwith a LF\r\n<13>three\r\n\n\n5 <14>4<13>last";
        let expected = vec![
            msg("<13>one"),
            msg("<13>two\nwith a LF"),
            msg("<13>three"),
            msg("<14>4"),
            msg("<13>last"),
        ];
        for chunk in [1, 2, 3, 7, 64] {
            assert_eq!(
                decode_all(input, chunk, 1024, Oversize::Truncate),
                expected,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn over_long_octet_frame_is_cut_and_the_next_frame_read() {
        let big = "x".repeat(50);
        let input = format!("50 {big}6 <13>ok");
        for chunk in [1, 5, 100] {
            let frames = decode_all(input.as_bytes(), chunk, 10, Oversize::Truncate);
            assert_eq!(
                frames,
                vec![
                    Frame::Error {
                        error: FramingError::TooLong { length: Some(50) },
                        kept: Some(Bytes::from("x".repeat(10)))
                    },
                    msg("<13>ok"),
                ],
                "chunk {chunk}"
            );
            let dropped = decode_all(input.as_bytes(), chunk, 10, Oversize::Drop);
            assert_eq!(
                dropped,
                vec![
                    Frame::Error { error: FramingError::TooLong { length: Some(50) }, kept: None },
                    msg("<13>ok"),
                ]
            );
        }
    }

    #[test]
    fn over_long_line_is_cut_and_skipped_to_its_end() {
        let input = format!("<13>{}\n<13>ok\n", "y".repeat(100));
        for chunk in [1, 8, 1000] {
            let frames = decode_all(input.as_bytes(), chunk, 20, Oversize::Truncate);
            assert_eq!(frames.len(), 2, "chunk {chunk}: {frames:?}");
            assert_eq!(
                frames[0],
                Frame::Error {
                    error: FramingError::TooLong { length: None },
                    kept: Some(Bytes::from(format!("<13>{}", "y".repeat(16))))
                }
            );
            assert_eq!(frames[1], msg("<13>ok"));
        }
        // One byte over the limit, line feed included in the same read.
        let frames = decode_all(b"abcdefghijk\nok\n", 100, 10, Oversize::Drop);
        assert_eq!(
            frames,
            vec![
                Frame::Error { error: FramingError::TooLong { length: None }, kept: None },
                msg("ok")
            ]
        );
        // Exactly at the limit is fine.
        assert_eq!(decode_all(b"abcdefghij\n", 100, 10, Oversize::Drop), vec![msg("abcdefghij")]);
    }

    #[test]
    fn digits_without_a_count_are_read_as_a_line() {
        let frames = decode_all(
            b"2024-05-01 started\n0 zero\n12345678901 x\n<13>ok\n",
            4,
            100,
            Oversize::Truncate,
        );
        let bad = |s: &str| Frame::Error {
            error: FramingError::BadOctetCount,
            kept: Some(Bytes::copy_from_slice(s.as_bytes())),
        };
        assert_eq!(
            frames,
            vec![bad("2024-05-01 started"), bad("0 zero"), bad("12345678901 x"), msg("<13>ok")]
        );
    }

    #[test]
    fn a_frame_cut_short_by_the_end_of_the_stream_is_kept() {
        let frames = decode_all(b"20 <13>only ten", 3, 100, Oversize::Truncate);
        assert_eq!(
            frames,
            vec![Frame::Error {
                error: FramingError::Incomplete { received: 12, declared: 20 },
                kept: Some(Bytes::from_static(b"<13>only ten")),
            }]
        );
        assert_eq!(decode_all(b"123", 1, 100, Oversize::Truncate), vec![msg("123")]);
    }

    /// Found by the `syslog_framing` fuzz target: digits with no space after them, at the end
    /// of the stream, were handed on whole, past a limit under ten bytes.
    #[test]
    fn digits_at_the_end_of_the_stream_stay_within_the_limit() {
        let cut = |kept: Option<&'static [u8]>| Frame::Error {
            error: FramingError::TooLong { length: None },
            kept: kept.map(Bytes::from_static),
        };
        assert_eq!(decode_all(b"12345", 2, 3, Oversize::Truncate), vec![cut(Some(b"123"))]);
        assert_eq!(decode_all(b"12345", 5, 3, Oversize::Drop), vec![cut(None)]);
        assert_eq!(decode_all(b"123", 1, 3, Oversize::Truncate), vec![msg("123")]);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..300 {
            let len = rng.random_range(0..400);
            let alphabet = b"0123456789 <>\n\r\xff\x00ab";
            let input: Vec<u8> =
                (0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect();
            let max = rng.random_range(1..40);
            for frame in decode_all(&input, rng.random_range(1..50), max, Oversize::Truncate) {
                let kept = match frame {
                    Frame::Message(b) => b,
                    Frame::Error { kept, .. } => kept.unwrap_or_default(),
                };
                assert!(
                    kept.len() <= max,
                    "a frame of {} bytes passed a limit of {max}",
                    kept.len()
                );
            }
        }
    }
}
