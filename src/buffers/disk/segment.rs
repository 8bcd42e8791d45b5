//! Segment files and the records in them: naming, framing, verification and repair.
//!
//! A record is `length:u32 LE | crc32(payload):u32 LE | payload`. A segment is records back
//! to back, nothing else: no file header, so a crash can only ever leave a bad tail, and a
//! segment is verified by walking it from the start.
//!
//! Verification ([`scan`]) walks the records from a starting offset. A record whose checksum
//! fails but whose length is plausible and is followed by a good record (or by the end of the
//! file) is a single bad record: it alone is dropped. Anything else (an impossible length, a
//! record cut short, two bad records in a row) means the framing is lost from there on, and
//! the segment is cut at the first bad byte. [`repair`] applies what the scan found; every
//! dropped range is reported with its file, offset and size.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::codec;

/// Bytes of a record header: length and checksum.
pub const HEADER_BYTES: u64 = 8;

/// The largest payload a record may have. The writer never writes larger records (it splits
/// batches), so a larger length is corruption.
pub const MAX_RECORD_BYTES: u64 = 64 * 1024 * 1024;

/// The file of the acknowledged position.
pub const ACK_FILE: &str = "ack.json";

const SEGMENT_SUFFIX: &str = ".seg";

/// The name of segment `id`: zero-padded so that names sort as ids do.
pub fn segment_name(id: u64) -> String {
    format!("{id:020}{SEGMENT_SUFFIX}")
}

/// The id of a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Appends a framed record holding `payload` to `out`.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Builds one framed record in place: events are encoded straight into the buffer that is
/// written, and the header (length, checksum, event count) is filled in at the end.
pub struct RecordBuilder {
    buf: Vec<u8>,
    count: u32,
}

impl Default for RecordBuilder {
    fn default() -> Self {
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.extend_from_slice(&[0; HEADER_BYTES as usize]);
        codec::encode_header(0, &mut buf);
        Self { buf, count: 0 }
    }
}

impl RecordBuilder {
    /// Encodes `event` into the record; returns the bytes it took.
    pub fn push(&mut self, event: &crate::event::Event) -> usize {
        let before = self.buf.len();
        codec::encode_event(event, &mut self.buf);
        self.count += 1;
        self.buf.len() - before
    }

    /// Takes the last event back out (it took `bytes`).
    pub fn pop(&mut self, bytes: usize) {
        self.buf.truncate(self.buf.len() - bytes);
        self.count -= 1;
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// Bytes of the payload so far.
    pub fn payload_len(&self) -> usize {
        self.buf.len() - HEADER_BYTES as usize
    }

    /// The framed record.
    pub fn finish(mut self) -> Vec<u8> {
        let h = HEADER_BYTES as usize;
        self.buf[h + 1..h + codec::HEADER_BYTES].copy_from_slice(&self.count.to_le_bytes());
        let len = (self.buf.len() - h) as u32;
        let crc = crc32fast::hash(&self.buf[h..]);
        self.buf[..4].copy_from_slice(&len.to_le_bytes());
        self.buf[4..h].copy_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

/// A place in the buffer: a segment and a byte offset in it. Everything before the
/// acknowledged position has been delivered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// Reads the acknowledged position. `Ok(None)` when there is no file yet; `Err` when it
/// cannot be read or parsed (the caller then replays from the first segment: duplicates,
/// never loss).
pub fn read_ack(dir: &Path) -> Result<Option<Position>, String> {
    let path = dir.join(ACK_FILE);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{} is unreadable ({e})", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes the acknowledged position atomically: temporary file, sync, rename, sync of the
/// directory. A crash leaves the old position or the new one.
pub fn write_ack(dir: &Path, position: Position) -> io::Result<()> {
    let tmp = dir.join(format!("{ACK_FILE}.tmp"));
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(&serde_json::to_vec(&position).unwrap_or_default())?;
        f.sync_data()
    });
    if let Err(e) = written {
        // A half-written temporary file would hold space a full file system needs.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, dir.join(ACK_FILE))?;
    sync_dir(dir)
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Why bytes were dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    /// One record whose checksum failed; the records around it are intact.
    BadRecord,
    /// The last record stops before its announced end (a write cut short by a crash).
    TruncatedRecord,
    /// A header with a length no record can have, or bytes that do not frame as records:
    /// everything from here to the end of the segment is unreadable.
    FramingLost,
}

/// A range of a segment that cannot be kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    pub offset: u64,
    pub bytes: u64,
    pub damage: Damage,
}

impl Corruption {
    /// How many records the range held, when that is known.
    pub fn records(&self) -> Option<u64> {
        match self.damage {
            Damage::BadRecord | Damage::TruncatedRecord => Some(1),
            Damage::FramingLost => None,
        }
    }

    pub fn describe(&self) -> String {
        let what = match self.damage {
            Damage::BadRecord => "1 record whose checksum does not match",
            Damage::TruncatedRecord => "1 record cut short (an interrupted write)",
            Damage::FramingLost => "bytes that do not form records (their record count is unknown)",
        };
        format!("{} bytes at offset {}: {what}", self.bytes, self.offset)
    }
}

/// What a walk over one segment found.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// Segment length in bytes.
    pub len: u64,
    /// Good records from the starting offset on, and the events they hold.
    pub records: u64,
    pub events: u64,
    /// Good records whose payload is not a valid event batch (only when decoding was asked).
    pub undecodable: Vec<u64>,
    pub corruption: Vec<Corruption>,
}

impl Scan {
    pub fn is_sound(&self) -> bool {
        self.corruption.is_empty() && self.undecodable.is_empty()
    }

    pub fn dropped_bytes(&self) -> u64 {
        self.corruption.iter().map(|c| c.bytes).sum()
    }
}

enum Step {
    Good { next: u64, events: u64, payload: Vec<u8> },
    BadChecksum { next: u64 },
    Truncated,
    Impossible,
}

/// Reads the record at `offset` (the reader is positioned there) of a file of `len` bytes.
fn step(r: &mut impl Read, offset: u64, len: u64, buf: &mut Vec<u8>) -> io::Result<Step> {
    if len - offset < HEADER_BYTES {
        return Ok(Step::Truncated);
    }
    let mut header = [0u8; HEADER_BYTES as usize];
    r.read_exact(&mut header)?;
    let size = u64::from(u32::from_le_bytes([header[0], header[1], header[2], header[3]]));
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if size == 0 || size > MAX_RECORD_BYTES {
        return Ok(Step::Impossible);
    }
    let next = offset + HEADER_BYTES + size;
    if next > len {
        return Ok(Step::Truncated);
    }
    buf.clear();
    buf.resize(size as usize, 0);
    r.read_exact(buf)?;
    if crc32fast::hash(buf) != crc {
        return Ok(Step::BadChecksum { next });
    }
    let events = codec::event_count(buf).unwrap_or(0);
    Ok(Step::Good { next, events, payload: std::mem::take(buf) })
}

/// Walks the records of the segment at `path` from `start`. With `decode`, every good record
/// is also decoded (slower; for `weir buffer check`).
pub fn scan(path: &Path, start: u64, decode: bool) -> io::Result<Scan> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut out = Scan { len, ..Scan::default() };
    if start >= len {
        return Ok(out);
    }
    let mut r = BufReader::with_capacity(256 * 1024, file);
    r.seek(SeekFrom::Start(start))?;
    let mut offset = start;
    let mut buf = Vec::new();
    // A bad record waiting for the next one to show whether the framing held.
    let mut suspect: Option<u64> = None;
    while offset < len {
        match step(&mut r, offset, len, &mut buf)? {
            Step::Good { next, events, payload } => {
                if let Some(at) = suspect.take() {
                    out.corruption.push(Corruption {
                        offset: at,
                        bytes: offset - at,
                        damage: Damage::BadRecord,
                    });
                }
                out.records += 1;
                out.events += events;
                if decode && codec::decode_events(&bytes::Bytes::from(payload)).is_err() {
                    out.undecodable.push(offset);
                }
                offset = next;
            }
            Step::BadChecksum { next } if suspect.is_none() => {
                // The payload was read whole: the reader is already at `next`.
                suspect = Some(offset);
                offset = next;
            }
            other => {
                let (at, damage) = match (suspect.take(), other) {
                    (Some(at), _) => (at, Damage::FramingLost),
                    (None, Step::Truncated) => {
                        // A cut-short record: its header was readable and its length plausible.
                        let damage = if len - offset >= HEADER_BYTES {
                            Damage::TruncatedRecord
                        } else {
                            Damage::FramingLost
                        };
                        (offset, damage)
                    }
                    (None, _) => (offset, Damage::FramingLost),
                };
                out.corruption.push(Corruption { offset: at, bytes: len - at, damage });
                return Ok(out);
            }
        }
    }
    if let Some(at) = suspect {
        // The bad record was the last one: its successor is the end of the file.
        out.corruption.push(Corruption { offset: at, bytes: len - at, damage: Damage::BadRecord });
    }
    Ok(out)
}

/// Removes what `scan` found bad from the segment at `path`: a bad tail is cut off; bad
/// records in the middle are left out of a rewritten copy that replaces the file (written,
/// synced, renamed). Offsets before the first bad record do not move.
pub fn repair(path: &Path, found: &Scan) -> io::Result<()> {
    let Some(first) = found.corruption.first() else { return Ok(()) };
    if found.corruption.len() == 1 && first.offset + first.bytes == found.len {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(first.offset)?;
        return f.sync_all();
    }
    let tmp = tmp_path(path);
    {
        let mut src = File::open(path)?;
        let mut dst = File::create(&tmp)?;
        let mut at = 0u64;
        for c in &found.corruption {
            copy_range(&mut src, &mut dst, at, c.offset - at)?;
            at = c.offset + c.bytes;
        }
        copy_range(&mut src, &mut dst, at, found.len.saturating_sub(at))?;
        dst.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

fn copy_range(src: &mut File, dst: &mut File, from: u64, len: u64) -> io::Result<()> {
    src.seek(SeekFrom::Start(from))?;
    let copied = io::copy(&mut src.take(len), dst)?;
    if copied != len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "segment shrank while repaired"));
    }
    Ok(())
}

/// One record read back at run time.
pub struct RawRecord {
    /// Where the record starts and where the next one starts.
    pub offset: u64,
    pub next: u64,
    /// The payload, or what was wrong with the record.
    pub payload: Result<bytes::Bytes, Damage>,
}

/// Reads the records of an open segment from `offset` up to `end` (exclusive), at most about
/// `max_bytes` of them. A bad record is returned as such; when the framing is lost the rest up
/// to `end` is returned as one bad range.
pub fn read_records(
    file: &mut File,
    offset: u64,
    end: u64,
    max_bytes: u64,
) -> io::Result<Vec<RawRecord>> {
    let mut out = Vec::new();
    file.seek(SeekFrom::Start(offset))?;
    let mut r = BufReader::with_capacity(256 * 1024, &mut *file);
    let mut at = offset;
    let mut buf = Vec::new();
    while at < end && at - offset < max_bytes {
        match step(&mut r, at, end, &mut buf)? {
            Step::Good { next, payload, .. } => {
                out.push(RawRecord { offset: at, next, payload: Ok(bytes::Bytes::from(payload)) });
                at = next;
            }
            Step::BadChecksum { next } => {
                out.push(RawRecord { offset: at, next, payload: Err(Damage::BadRecord) });
                at = next;
            }
            Step::Truncated | Step::Impossible => {
                out.push(RawRecord { offset: at, next: end, payload: Err(Damage::FramingLost) });
                at = end;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn record(n: usize) -> Vec<u8> {
        let events: Vec<Event> = (0..n).map(|i| Event::from_message(format!("line {i}"))).collect();
        let mut payload = Vec::new();
        codec::encode_events(&events, &mut payload);
        let mut out = Vec::new();
        frame(&payload, &mut out);
        out
    }

    /// A segment of five records of 1..=5 events; returns its path and the record offsets.
    fn segment(dir: &Path) -> (PathBuf, Vec<u64>, u64) {
        let path = dir.join(segment_name(7));
        let mut bytes = Vec::new();
        let mut offsets = Vec::new();
        for n in 1..=5 {
            offsets.push(bytes.len() as u64);
            bytes.extend(record(n));
        }
        fs::write(&path, &bytes).unwrap();
        (path, offsets, bytes.len() as u64)
    }

    #[test]
    fn the_builder_frames_as_frame_does() {
        let events: Vec<Event> = (0..3).map(|i| Event::from_message(format!("e{i}"))).collect();
        let mut b = RecordBuilder::default();
        for e in &events {
            b.push(e);
        }
        let taken = b.push(&Event::from_message("taken back"));
        b.pop(taken);
        assert_eq!(b.count(), 3);
        let mut payload = Vec::new();
        codec::encode_events(&events, &mut payload);
        let mut expected = Vec::new();
        frame(&payload, &mut expected);
        assert_eq!(b.finish(), expected);
    }

    #[test]
    fn names_sort_as_ids() {
        assert_eq!(segment_name(12), "00000000000000000012.seg");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("12.seg"), None);
        assert_eq!(parse_segment_name("ack.json"), None);
    }

    #[test]
    fn a_sound_segment_scans_clean() {
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets, _) = segment(dir.path());
        let s = scan(&path, 0, true).unwrap();
        assert!(s.is_sound());
        assert_eq!((s.records, s.events), (5, 15));
        let from_third = scan(&path, offsets[2], false).unwrap();
        assert_eq!((from_third.records, from_third.events), (3, 12));
    }

    #[test]
    fn a_flipped_byte_drops_exactly_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets, len) = segment(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        bytes[offsets[1] as usize + 12] ^= 0x55;
        fs::write(&path, &bytes).unwrap();
        let s = scan(&path, 0, false).unwrap();
        assert_eq!(
            s.corruption,
            vec![Corruption {
                offset: offsets[1],
                bytes: offsets[2] - offsets[1],
                damage: Damage::BadRecord
            }]
        );
        assert_eq!((s.records, s.events), (4, 13));
        repair(&path, &s).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), len - (offsets[2] - offsets[1]));
        let again = scan(&path, 0, true).unwrap();
        assert!(again.is_sound());
        assert_eq!((again.records, again.events), (4, 13));
    }

    #[test]
    fn a_cut_tail_is_truncated_at_the_last_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets, len) = segment(dir.path());
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let s = scan(&path, 0, false).unwrap();
        assert_eq!(
            s.corruption,
            vec![Corruption {
                offset: offsets[4],
                bytes: len - 3 - offsets[4],
                damage: Damage::TruncatedRecord
            }]
        );
        repair(&path, &s).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), offsets[4]);
        assert!(scan(&path, 0, false).unwrap().is_sound());
    }

    #[test]
    fn a_broken_length_loses_the_framing_from_there() {
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets, len) = segment(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        bytes[offsets[2] as usize + 3] = 0xff; // length now far beyond 64 MiB
        fs::write(&path, &bytes).unwrap();
        let s = scan(&path, 0, false).unwrap();
        assert_eq!(
            s.corruption,
            vec![Corruption {
                offset: offsets[2],
                bytes: len - offsets[2],
                damage: Damage::FramingLost
            }]
        );
        assert_eq!(s.records, 2);
        // Garbage appended after good records, shorter than a header.
        let (path, _, len) = segment(&dir.path().join("."));
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[1, 2, 3]).unwrap();
        let s = scan(&path, 0, false).unwrap();
        assert_eq!(
            s.corruption,
            vec![Corruption { offset: len, bytes: 3, damage: Damage::FramingLost }]
        );
    }

    #[test]
    fn two_bad_records_in_a_row_cut_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets, len) = segment(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        bytes[offsets[1] as usize + 10] ^= 1;
        bytes[offsets[2] as usize + 10] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let s = scan(&path, 0, false).unwrap();
        assert_eq!(
            s.corruption,
            vec![Corruption {
                offset: offsets[1],
                bytes: len - offsets[1],
                damage: Damage::FramingLost
            }]
        );
    }

    #[test]
    fn run_time_reads_report_bad_records() {
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets, len) = segment(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        bytes[offsets[3] as usize + 9] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let mut f = File::open(&path).unwrap();
        let recs = read_records(&mut f, offsets[1], len, u64::MAX).unwrap();
        let kinds: Vec<bool> = recs.iter().map(|r| r.payload.is_ok()).collect();
        assert_eq!(kinds, [true, true, false, true]);
        assert_eq!(recs.last().unwrap().next, len);
        // The byte budget stops after the record that crosses it.
        let recs = read_records(&mut f, 0, len, 1).unwrap();
        assert_eq!(recs.len(), 1);
    }

    #[test]
    fn ack_position_round_trips_and_tolerates_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_ack(dir.path()).unwrap(), None);
        let p = Position { segment: 3, offset: 99 };
        write_ack(dir.path(), p).unwrap();
        assert_eq!(read_ack(dir.path()).unwrap(), Some(p));
        fs::write(dir.path().join(ACK_FILE), b"{\"segm").unwrap();
        assert!(read_ack(dir.path()).is_err());
    }
}
