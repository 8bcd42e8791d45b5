//! Recovery at start: what is on disk, verified and repaired, and where reading starts.

use super::*;

/// A buffer directory after recovery: what is on disk and where reading starts.
#[derive(Debug)]
pub struct Recovered {
    /// Segment ids and their lengths in bytes.
    pub(super) segments: BTreeMap<u64, u64>,
    /// Where the reader starts (the acknowledged position, moved to a segment that exists).
    pub(super) start: Position,
    /// Id of the segment the writer opens.
    pub(super) next_segment: u64,
    /// Records and events from `start` on.
    pub records: u64,
    pub events: u64,
    /// What was dropped, one line each (already logged).
    pub dropped: Vec<String>,
}

impl Recovered {
    pub fn bytes(&self) -> u64 {
        self.segments.values().sum()
    }
}

/// Opens (creating it if needed) the buffer directory, verifies it and repairs what is
/// damaged, logging and counting every dropped range. Errs only when the directory cannot be
/// created or listed.
pub(super) fn recover(
    settings: &Settings,
    metrics: &BufferMetrics,
) -> Result<Recovered, BuildError> {
    let dir = &settings.dir;
    let mut segments = open_dir(dir)?;
    let ack = read_ack(settings);
    if let Some(ack) = ack {
        remove_delivered(dir, &mut segments, ack);
    }
    let next_segment = segments
        .keys()
        .next_back()
        .map(|s| s + 1)
        .unwrap_or_else(|| ack.map_or(0, |a| a.segment + 1));
    let start = match (ack, segments.keys().next()) {
        (Some(a), Some(&first)) if a.segment == first => a,
        (_, Some(&first)) => Position { segment: first, offset: 0 },
        (_, None) => Position { segment: next_segment, offset: 0 },
    };
    let mut out = Recovered {
        segments: BTreeMap::new(),
        start,
        next_segment,
        records: 0,
        events: 0,
        dropped: Vec::new(),
    };
    for (seg, len) in segments {
        verify_segment(settings, metrics, seg, len, &mut out);
    }
    // The start segment may have been dropped whole.
    if !out.segments.contains_key(&out.start.segment) {
        out.start = Position {
            segment: out.segments.keys().next().copied().unwrap_or(next_segment),
            offset: 0,
        };
    }
    Ok(out)
}

/// Creates the directory if needed and clears what a crash left: temporary files and empty
/// segments. Returns the segments and their lengths.
fn open_dir(dir: &Path) -> Result<BTreeMap<u64, u64>, BuildError> {
    fs::create_dir_all(dir).map_err(|source| BuildError::Io {
        what: "cannot create the disk buffer directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let listing = list(dir)?;
    for tmp in &listing.temporary {
        // A write interrupted before its rename: the file it would have replaced is intact.
        let _ = fs::remove_file(tmp);
    }
    let mut segments = BTreeMap::new();
    for (seg, len) in listing.segments {
        if len == 0 {
            let _ = fs::remove_file(dir.join(segment::segment_name(seg)));
        } else {
            segments.insert(seg, len);
        }
    }
    Ok(segments)
}

/// The acknowledged position; `None` when there is none or it cannot be read (logged).
fn read_ack(settings: &Settings) -> Option<Position> {
    match segment::read_ack(&settings.dir) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(
                component = %settings.id, error = %e,
                "disk buffer: the acknowledged position is unreadable; delivering the buffer \
                 again from its first segment (duplicates possible, nothing lost)"
            );
            None
        }
    }
}

/// Deletes the segments wholly before the acknowledged position: they were delivered (a crash
/// came between writing the position and deleting them).
fn remove_delivered(dir: &Path, segments: &mut BTreeMap<u64, u64>, ack: Position) {
    let stale: Vec<u64> = segments.range(..ack.segment).map(|(s, _)| *s).collect();
    for s in stale {
        segments.remove(&s);
        let _ = fs::remove_file(dir.join(segment::segment_name(s)));
    }
}

/// Verifies segment `seg` (from the start position when it is the start segment), drops and
/// reports its corrupt ranges, and adds what is kept to `out`. A segment that cannot be read
/// or repaired is left out.
fn verify_segment(
    settings: &Settings,
    metrics: &BufferMetrics,
    seg: u64,
    len: u64,
    out: &mut Recovered,
) {
    let id = &settings.id;
    let path = settings.dir.join(segment::segment_name(seg));
    let from = if seg == out.start.segment { out.start.offset.min(len) } else { 0 };
    let found = match segment::scan(&path, from, false) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(
                component = %id, file = %path.display(), error = %e, bytes = len,
                "disk buffer: cannot read a segment; it is left out (and left on disk)"
            );
            out.dropped.push(format!("{}: unreadable ({e}), {len} bytes", path.display()));
            return;
        }
    };
    for c in &found.corruption {
        report_corruption(id, metrics, &path, c);
        out.dropped.push(format!("{}: dropped {}", path.display(), c.describe()));
    }
    if let Err(e) = segment::repair(&path, &found) {
        tracing::error!(
            component = %id, file = %path.display(), error = %e,
            "disk buffer: cannot repair a segment; it is left out (and left on disk)"
        );
        return;
    }
    let kept = found.len - found.dropped_bytes();
    if kept == 0 {
        let _ = fs::remove_file(&path);
        return;
    }
    out.records += found.records;
    out.events += found.events;
    out.segments.insert(seg, kept);
}

/// Logs a corrupt range found at start and counts it.
fn report_corruption(id: &str, metrics: &BufferMetrics, path: &Path, c: &segment::Corruption) {
    tracing::error!(
        component = %id,
        file = %path.display(),
        offset = c.offset,
        bytes = c.bytes,
        records = c.records().map_or_else(|| "unknown".to_string(), |r| r.to_string()),
        "disk buffer: corrupt data dropped at start: {}",
        c.describe()
    );
    metrics.corrupted_bytes.inc_by(c.bytes);
    metrics.corrupted_records.inc_by(c.records().unwrap_or(0));
}

/// The files of a buffer directory.
#[derive(Debug, Default)]
pub(super) struct Listing {
    pub(super) segments: Vec<(u64, u64)>,
    pub(super) temporary: Vec<PathBuf>,
    pub(super) other: Vec<PathBuf>,
}

pub(super) fn list(dir: &Path) -> Result<Listing, BuildError> {
    let mut out = Listing::default();
    let cannot_list =
        |source| BuildError::Io { what: "cannot list", path: dir.to_path_buf(), source };
    for entry in fs::read_dir(dir).map_err(cannot_list)? {
        let entry = entry.map_err(cannot_list)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if let Some(id) = segment::parse_segment_name(&name) {
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.segments.push((id, len));
        } else if name.ends_with(".tmp") {
            out.temporary.push(path);
        } else if name != segment::ACK_FILE {
            out.other.push(path);
        }
    }
    out.segments.sort_unstable();
    Ok(out)
}
