//! Splitting a byte stream into lines, without copying and without unbounded buffering.
//!
//! Bytes are read into a buffer; the part up to the last newline is frozen and every line is a
//! slice of it (one allocation per read, not per line). A trailing `\r` is removed. A line
//! longer than `max_line_bytes` is never buffered beyond that limit: it is either cut (the
//! first `max_line_bytes` are emitted, the rest up to the newline skipped) or dropped whole.
//! Offsets are tracked so that a file source knows exactly where each line ends.

use std::io::{self, Read};

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

/// What to do with a line longer than `max_line_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Oversize {
    /// Keep the first `max_line_bytes` bytes as the event (counted and logged).
    #[default]
    Truncate,
    /// Drop the whole line (counted and logged).
    Drop,
}

/// One line out of the framer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub bytes: Bytes,
    /// Offset of the line's first byte.
    pub start: u64,
    /// Offset just past the line's newline.
    pub end: u64,
    /// The line was longer than the limit and was cut.
    pub truncated: bool,
}

/// What happened to over-long lines during one call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Overlong {
    pub truncated: usize,
    pub dropped: usize,
}

/// A line framer over one stream.
#[derive(Debug)]
pub struct LineFramer {
    buf: BytesMut,
    /// Stream offset of `buf[0]`.
    offset: u64,
    max_line_bytes: usize,
    oversize: Oversize,
    /// Inside an over-long line: skip until the next newline.
    skipping: bool,
    /// Start offset of the over-long line being skipped, for its `Line`.
    skip_start: u64,
    /// `buf` is lent by the caller ([`LineFramer::read_pooled`]).
    pooled: bool,
}

impl LineFramer {
    pub fn new(offset: u64, max_line_bytes: usize, oversize: Oversize) -> Self {
        Self {
            buf: BytesMut::new(),
            offset,
            max_line_bytes: max_line_bytes.max(1),
            oversize,
            skipping: false,
            skip_start: offset,
            pooled: false,
        }
    }

    /// Offset up to which every byte has been turned into a line or skipped: where a reader
    /// resuming after the lines already emitted must start.
    /// Mid-way through an over-long line this is where the skipping has got to: the line's
    /// first part is already out, so resuming here cannot repeat it.
    pub fn consumed_offset(&self) -> u64 {
        self.offset
    }

    /// Bytes buffered that do not yet form a line.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Restarts at `offset` with nothing buffered (after truncation or a seek).
    pub fn reset(&mut self, offset: u64) {
        self.buf.clear();
        self.offset = offset;
        self.skipping = false;
        self.skip_start = offset;
    }

    /// Reads up to `chunk` bytes from `reader`; returns how many were read (0 at EOF).
    pub fn read_from(&mut self, reader: &mut impl Read, chunk: usize) -> io::Result<usize> {
        let start = self.buf.len();
        self.buf.resize(start + chunk, 0);
        let result = reader.read(&mut self.buf[start..]);
        let n = *result.as_ref().unwrap_or(&0);
        self.buf.truncate(start + n);
        result
    }

    /// As [`LineFramer::read_from`], into `pool`, a buffer lent by the caller and shared by
    /// many framers (a file source with thousands of files keeps one read buffer, not one
    /// each): what this framer had buffered moves to its front. Give it back with
    /// [`LineFramer::give_back`] once the lines are taken.
    pub fn read_pooled(
        &mut self,
        pool: &mut BytesMut,
        reader: &mut impl Read,
        chunk: usize,
    ) -> io::Result<usize> {
        let mut lent = std::mem::take(pool);
        lent.clear();
        lent.extend_from_slice(&self.buf);
        self.buf = lent;
        self.pooled = true;
        self.read_from(reader, chunk)
    }

    /// Returns the buffer lent by [`LineFramer::read_pooled`]; a partial line left in it is
    /// copied into a buffer of its own size.
    pub fn give_back(&mut self, pool: &mut BytesMut) {
        if !self.pooled {
            return;
        }
        let rest = BytesMut::from(&self.buf[..]);
        self.buf.clear();
        *pool = std::mem::replace(&mut self.buf, rest);
        self.pooled = false;
    }

    /// Takes the first `n` buffered bytes. From a lent buffer, a small part is copied out
    /// rather than sliced: a slice would keep the whole buffer allocated while its events are
    /// in flight, and many files' one-line reads would each hold a buffer.
    fn take_front(&mut self, n: usize) -> Bytes {
        if self.pooled && n < self.buf.capacity() / 4 {
            let b = Bytes::copy_from_slice(&self.buf[..n]);
            bytes::Buf::advance(&mut self.buf, n);
            b
        } else {
            self.buf.split_to(n).freeze()
        }
    }

    /// The last `n` bytes buffered: what the read that returned `n` brought, before any
    /// line is taken.
    pub fn last_read(&self, n: usize) -> &[u8] {
        &self.buf[self.buf.len().saturating_sub(n)..]
    }

    /// Forgets the last `n` bytes buffered (a read that turned out to come from another
    /// file at the same path), as if that read had not been made.
    pub fn unread(&mut self, n: usize) {
        self.buf.truncate(self.buf.len().saturating_sub(n));
    }

    /// Appends bytes that arrived some other way (stdin, tests).
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Takes every complete line at once, as one buffer, when none needs a change: none
    /// empty, none ending in `\r`, none over `max_line_bytes`, and not inside an over-long
    /// line. Returns the bytes (each line followed by its newline) and how many lines they
    /// are; otherwise takes nothing and returns `None`, and [`LineFramer::drain_lines`]
    /// frames them one by one.
    ///
    /// The checks search the whole buffer rather than go line by line (a call per line was
    /// a tenth of the raw scenario's CPU): vectorised searches for `\n\n` and `\r\n`, a
    /// vectorised count of newlines, and for length one backward search per
    /// `max_line_bytes`, each jumping to the last newline within reach.
    pub fn take_block(&mut self) -> Option<(Bytes, usize)> {
        if self.skipping {
            return None;
        }
        let end = memchr::memrchr(b'\n', &self.buf)? + 1;
        let data = &self.buf[..end];
        if data[0] == b'\n'
            || memchr::memmem::find(data, b"\n\n").is_some()
            || memchr::memmem::find(data, b"\r\n").is_some()
        {
            return None;
        }
        let max = self.max_line_bytes;
        let mut p = 0;
        // Lines from `p` on are within the limit once fewer than `max` bytes are left.
        while end - p > max {
            match memchr::memrchr(b'\n', &data[p..p + max + 1]) {
                Some(nl) => p += nl + 1,
                None => return None,
            }
        }
        let count = memchr::memchr_iter(b'\n', data).count();
        let block = self.take_front(end);
        self.offset += end as u64;
        Some((block, count))
    }

    /// Moves every complete line into `out`.
    pub fn drain_lines(&mut self, out: &mut Vec<Line>) -> Overlong {
        let mut over = Overlong::default();
        loop {
            if self.skipping {
                match memchr::memchr(b'\n', &self.buf) {
                    Some(nl) => {
                        let _ = self.buf.split_to(nl + 1);
                        self.offset += (nl + 1) as u64;
                        self.skipping = false;
                        // A cut line's remainder ends here: the line's end offset moves on.
                        if let Some(last) = out.last_mut()
                            && last.truncated
                            && last.start == self.skip_start
                        {
                            last.end = self.offset;
                        }
                    }
                    None => {
                        self.offset += self.buf.len() as u64;
                        self.buf.clear();
                        return over;
                    }
                }
            }
            let Some(last_nl) = memchr::memrchr(b'\n', &self.buf) else {
                if self.buf.len() > self.max_line_bytes {
                    self.start_skipping(out, &mut over);
                    continue;
                }
                return over;
            };
            let complete = self.take_front(last_nl + 1);
            let base = self.offset;
            self.offset += complete.len() as u64;
            let mut pos = 0;
            for nl in memchr::memchr_iter(b'\n', &complete) {
                let mut end = nl;
                if end > pos && complete[end - 1] == b'\r' {
                    end -= 1;
                }
                let len = end - pos;
                let start = base + pos as u64;
                let line_end = base + nl as u64 + 1;
                if len > self.max_line_bytes {
                    match self.oversize {
                        Oversize::Truncate => {
                            over.truncated += 1;
                            out.push(Line {
                                bytes: complete.slice(pos..pos + self.max_line_bytes),
                                start,
                                end: line_end,
                                truncated: true,
                            });
                        }
                        Oversize::Drop => over.dropped += 1,
                    }
                } else {
                    out.push(Line {
                        bytes: complete.slice(pos..end),
                        start,
                        end: line_end,
                        truncated: false,
                    });
                }
                pos = nl + 1;
            }
            // Loop again: the rest of the buffer may itself be over-long.
            if self.buf.len() <= self.max_line_bytes {
                return over;
            }
        }
    }

    fn start_skipping(&mut self, out: &mut Vec<Line>, over: &mut Overlong) {
        let start = self.offset;
        match self.oversize {
            Oversize::Truncate => {
                over.truncated += 1;
                let head = self.buf.split_to(self.max_line_bytes).freeze();
                out.push(Line {
                    bytes: head,
                    start,
                    end: start + self.max_line_bytes as u64,
                    truncated: true,
                });
                self.offset += self.max_line_bytes as u64;
            }
            Oversize::Drop => over.dropped += 1,
        }
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        self.skipping = true;
        self.skip_start = start;
    }

    /// Takes whatever is buffered as a final line (at the end of a stream that does not end
    /// with a newline).
    pub fn take_rest(&mut self) -> Option<Line> {
        if self.skipping || self.buf.is_empty() {
            self.offset += self.buf.len() as u64;
            self.buf.clear();
            self.skipping = false;
            return None;
        }
        let bytes = self.buf.split().freeze();
        let start = self.offset;
        self.offset += bytes.len() as u64;
        let mut b = bytes;
        if b.ends_with(b"\r") {
            b.truncate(b.len() - 1);
        }
        let truncated = b.len() > self.max_line_bytes;
        if truncated {
            b.truncate(self.max_line_bytes);
        }
        Some(Line { bytes: b, start, end: self.offset, truncated })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two framers reading through one lent buffer: each keeps its own partial line (in a
    /// buffer of its size), small reads are copied out so events do not hold the shared
    /// buffer, and the buffer comes back to the pool.
    #[test]
    fn framers_share_one_read_buffer() {
        let mut pool = BytesMut::new();
        let mut a = LineFramer::new(0, 1000, Oversize::Truncate);
        let mut b = LineFramer::new(0, 1000, Oversize::Truncate);
        let mut out = Vec::new();
        assert_eq!(a.read_pooled(&mut pool, &mut &b"a1\na2\npart"[..], 4096).unwrap(), 10);
        a.drain_lines(&mut out);
        a.give_back(&mut pool);
        assert!(pool.capacity() > 4000, "the buffer is back in the pool");
        assert_eq!(a.pending_bytes(), 4);
        assert!(a.buf.capacity() < 64, "only the partial line is kept");
        assert_eq!(b.read_pooled(&mut pool, &mut &b"b1\n"[..], 4096).unwrap(), 3);
        b.drain_lines(&mut out);
        b.give_back(&mut pool);
        assert_eq!(a.read_pooled(&mut pool, &mut &b"ial\n"[..], 4096).unwrap(), 4);
        a.drain_lines(&mut out);
        a.give_back(&mut pool);
        let got: Vec<_> = out.iter().map(|l| (l.bytes.as_ref(), l.start, l.end)).collect();
        assert_eq!(got, [(&b"a1"[..], 0, 3), (b"a2", 3, 6), (b"b1", 0, 3), (b"partial", 6, 14)]);
        // Small lines were copied: the pool's buffer is free to be reused in place.
        pool.clear();
        assert!(pool.try_reclaim(4096), "no line holds the shared buffer");
        drop(out);
    }

    fn lines(framer: &mut LineFramer, input: &[&[u8]]) -> (Vec<(String, u64, u64)>, Overlong) {
        let mut out = Vec::new();
        let mut over = Overlong::default();
        for chunk in input {
            framer.extend(chunk);
            let o = framer.drain_lines(&mut out);
            over.truncated += o.truncated;
            over.dropped += o.dropped;
        }
        (
            out.into_iter()
                .map(|l| (String::from_utf8_lossy(&l.bytes).into_owned(), l.start, l.end))
                .collect(),
            over,
        )
    }

    #[test]
    fn splits_across_chunks_with_offsets() {
        let mut f = LineFramer::new(100, 1024, Oversize::Truncate);
        let (got, _) = lines(&mut f, &[b"ab", b"c\r\nde\n\nf"]);
        assert_eq!(
            got,
            vec![("abc".into(), 100, 105), ("de".into(), 105, 108), ("".into(), 108, 109)]
        );
        assert_eq!(f.consumed_offset(), 109);
        assert_eq!(f.pending_bytes(), 1);
    }

    #[test]
    fn long_lines_are_cut_or_dropped_without_buffering() {
        let mut f = LineFramer::new(0, 4, Oversize::Truncate);
        let (got, over) = lines(&mut f, &[b"0123456", b"789\nok\n", b"abcdefghij\nz\n"]);
        assert_eq!(
            got,
            vec![
                ("0123".into(), 0, 11),
                ("ok".into(), 11, 14),
                ("abcd".into(), 14, 25),
                ("z".into(), 25, 27)
            ]
        );
        assert_eq!(over.truncated, 2);
        assert!(f.pending_bytes() == 0);

        let mut f = LineFramer::new(0, 4, Oversize::Drop);
        let (got, over) = lines(&mut f, &[b"0123456", b"789\nok\n"]);
        assert_eq!(got, vec![("ok".into(), 11, 14)]);
        assert_eq!(over.dropped, 1);
        // A huge line never grows the buffer past the limit.
        let mut f = LineFramer::new(0, 8, Oversize::Drop);
        for _ in 0..1000 {
            f.extend(&[b'x'; 100]);
            f.drain_lines(&mut Vec::new());
            assert!(f.pending_bytes() <= 8);
        }
    }

    /// A reader that takes blocks where it can (the file source when its consumers write
    /// lines as read) sees the same lines, with the same offsets, as one that frames every
    /// line: over inputs mixing empty lines, `\r\n`, over-long lines and lines cut across
    /// reads.
    #[test]
    fn blocks_hold_exactly_the_lines_framing_gives() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let (mut blocks, mut refused) = (0, 0);
        for round in 0..300 {
            let mut input = Vec::new();
            for _ in 0..next(40) {
                let len = match next(10) {
                    0 => 0,
                    1 => 20 + next(20),
                    _ => next(12),
                };
                input.extend((0..len).map(|i| b'a' + (i % 26) as u8));
                if next(8) == 0 {
                    input.push(b'\r');
                }
                input.push(b'\n');
            }
            let max = 16;
            let oversize = if round % 2 == 0 { Oversize::Truncate } else { Oversize::Drop };
            let (mut a, mut b) =
                (LineFramer::new(0, max, oversize), LineFramer::new(0, max, oversize));
            let (mut got, mut want) = (Vec::new(), Vec::new());
            let mut at = 0;
            while at < input.len() {
                let n = (1 + next(60) as usize).min(input.len() - at);
                a.extend(&input[at..at + n]);
                b.extend(&input[at..at + n]);
                at += n;
                if let Some((data, count)) = a.take_block() {
                    blocks += 1;
                    assert_eq!(data.last(), Some(&b'\n'));
                    let split: Vec<&[u8]> = data[..data.len() - 1].split(|&c| c == b'\n').collect();
                    assert_eq!(split.len(), count);
                    got.extend(split.into_iter().map(|l| l.to_vec()));
                } else {
                    refused += 1;
                }
                let mut lines = Vec::new();
                a.drain_lines(&mut lines);
                got.extend(lines.into_iter().map(|l| l.bytes.to_vec()));
                let mut lines = Vec::new();
                b.drain_lines(&mut lines);
                want.extend(lines.into_iter().map(|l| l.bytes.to_vec()));
                assert_eq!(a.consumed_offset(), b.consumed_offset());
            }
            // The file source skips empty lines either way.
            want.retain(|l| !l.is_empty());
            got.retain(|l| !l.is_empty());
            assert_eq!(got, want, "round {round}");
        }
        assert!(blocks > 100 && refused > 100, "blocks {blocks}, refused {refused}");
    }

    #[test]
    fn rest_without_newline() {
        let mut f = LineFramer::new(0, 10, Oversize::Truncate);
        let (got, _) = lines(&mut f, &[b"a\nlast"]);
        assert_eq!(got.len(), 1);
        let rest = f.take_rest().unwrap();
        assert_eq!((&rest.bytes[..], rest.start, rest.end), (&b"last"[..], 2, 6));
    }
}
