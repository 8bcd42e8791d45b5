//! `weir buffer check DATA_DIR`: an fsck of the disk buffers under `DATA_DIR/buffers/`. It
//! changes nothing: it reports every buffer's segments, the records and events waiting, the
//! acknowledged position, and every corrupt range (file, offset, size), and says whether the
//! buffers are sound. `weir run` repairs what it reports, dropping exactly those ranges.
//!
//! Unlike the scan at start-up, the check also decodes every record, so it finds records whose
//! checksum holds but whose contents weir cannot read.

use std::fmt::Write as _;
use std::path::Path;

use super::segment::{self, Position};
use super::{list, segment::Scan};

/// The text of the report and whether every buffer is sound.
pub struct Report {
    pub text: String,
    pub sound: bool,
}

/// Why the check could not look at the buffers at all.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{} is not a directory", .0.display())]
    NotADirectory(std::path::PathBuf),
    #[error("cannot list {}: {source}", .path.display())]
    List {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Checks every buffer under `data_dir`. Errs when the directory itself cannot be read.
pub fn check_data_dir(data_dir: &Path) -> Result<Report, CheckError> {
    let root = data_dir.join("buffers");
    let mut text = String::new();
    let mut sound = true;
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !data_dir.is_dir() {
                return Err(CheckError::NotADirectory(data_dir.to_path_buf()));
            }
            let _ = writeln!(text, "no disk buffers in {}", data_dir.display());
            return Ok(Report { text, sound });
        }
        Err(source) => return Err(CheckError::List { path: root, source }),
    };
    let mut dirs: Vec<_> = entries.filter_map(Result::ok).filter(|e| e.path().is_dir()).collect();
    dirs.sort_by_key(|e| e.file_name());
    if dirs.is_empty() {
        let _ = writeln!(text, "no disk buffers in {}", data_dir.display());
    }
    for entry in dirs {
        let name = entry.file_name().to_string_lossy().into_owned();
        sound &= check_buffer(&name, &entry.path(), &mut text);
    }
    let _ = writeln!(
        text,
        "{}",
        if sound {
            "result: sound"
        } else {
            "result: NOT SOUND (weir run drops the corrupt ranges above at start and goes on)"
        }
    );
    Ok(Report { text, sound })
}

fn check_buffer(name: &str, dir: &Path, out: &mut String) -> bool {
    let _ = writeln!(out, "buffer {name} ({})", dir.display());
    let mut sound = true;
    let listing = match list(dir) {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(out, "  ERROR {e}");
            return false;
        }
    };
    let ack = match segment::read_ack(dir) {
        Ok(Some(p)) => {
            let _ = writeln!(
                out,
                "  acknowledged position: segment {}, offset {}",
                p.segment, p.offset
            );
            Some(p)
        }
        Ok(None) => {
            let _ = writeln!(out, "  acknowledged position: none yet (read from the start)");
            None
        }
        Err(e) => {
            sound = false;
            let _ = writeln!(
                out,
                "  CORRUPT {e}: the buffer would be delivered again from its first segment"
            );
            None
        }
    };
    let (mut segments, mut bytes, mut records, mut events) = (0u64, 0u64, 0u64, 0u64);
    for (id, len) in &listing.segments {
        let file = segment::segment_name(*id);
        let path = dir.join(&file);
        if *len == 0 {
            let _ = writeln!(out, "  {file}  empty (removed at start)");
            continue;
        }
        segments += 1;
        bytes += len;
        if ack.is_some_and(|a| *id < a.segment) {
            let _ = writeln!(out, "  {file}  {len} bytes, delivered (removed at start)");
            continue;
        }
        let from = match ack {
            Some(Position { segment, offset }) if segment == *id => offset,
            _ => 0,
        };
        let scan: Scan = match segment::scan(&path, from, true) {
            Ok(s) => s,
            Err(e) => {
                sound = false;
                let _ = writeln!(out, "  ERROR {file}: cannot read: {e}");
                continue;
            }
        };
        records += scan.records;
        events += scan.events;
        let _ = writeln!(
            out,
            "  {file}  {len} bytes, {} records waiting ({} events){}",
            scan.records,
            scan.events,
            if from > 0 { format!(" from offset {from}") } else { String::new() }
        );
        for c in &scan.corruption {
            sound = false;
            let _ = writeln!(out, "  CORRUPT {file}: {}", c.describe());
        }
        for offset in &scan.undecodable {
            sound = false;
            let _ = writeln!(
                out,
                "  CORRUPT {file}: the record at offset {offset} passes its checksum but does \
                 not decode"
            );
        }
    }
    for p in &listing.temporary {
        let _ = writeln!(
            out,
            "  note: {} is a leftover temporary file (removed at start)",
            p.display()
        );
    }
    for p in &listing.other {
        let _ = writeln!(out, "  note: {} is not a file of the buffer (left alone)", p.display());
    }
    let _ = writeln!(
        out,
        "  total: {segments} segments, {bytes} bytes, {records} records and {events} events \
         waiting; {}",
        if sound { "sound" } else { "NOT SOUND" }
    );
    sound
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    #[test]
    fn reports_what_is_there_and_what_is_corrupt() {
        let data = tempfile::tempdir().unwrap();
        let report = check_data_dir(data.path()).unwrap();
        assert!(report.sound && report.text.contains("no disk buffers"), "{}", report.text);

        let dir = data.path().join("buffers").join("es");
        std::fs::create_dir_all(&dir).unwrap();
        let mut bytes = Vec::new();
        for n in 1..=3 {
            let events: Vec<Event> = (0..n).map(|_| Event::from_message("x")).collect();
            let mut payload = Vec::new();
            super::super::codec::encode_events(&events, &mut payload);
            segment::frame(&payload, &mut bytes);
        }
        std::fs::write(dir.join(segment::segment_name(1)), &bytes).unwrap();
        std::fs::write(dir.join(segment::segment_name(2)), b"").unwrap();
        let report = check_data_dir(data.path()).unwrap();
        assert!(report.sound, "{}", report.text);
        assert!(report.text.contains("3 records waiting (6 events)"), "{}", report.text);
        assert!(report.text.contains("empty (removed at start)"), "{}", report.text);

        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(dir.join(segment::segment_name(1)), &bytes).unwrap();
        let report = check_data_dir(data.path()).unwrap();
        assert!(!report.sound, "{}", report.text);
        assert!(report.text.contains("1 record whose checksum does not match"), "{}", report.text);
        assert!(check_data_dir(&data.path().join("missing")).is_err());
    }
}
