//! File positions: what has been acknowledged, and the checkpoint file that survives restarts.
//!
//! Each read batch of a file is registered with its end position before it is sent; its
//! acknowledgement marks it done. A file's checkpoint advances only over the contiguous run of
//! done batches at the front of its queue, so a position is never saved past an event that has
//! not left weir. A batch that comes back errored (a downstream component stopped) holds the
//! position where it is until the next start, which reads it again.
//!
//! The checkpoint file is JSON (compact: about 100 bytes a file), written to a temporary
//! file, synced and renamed over the old one, so a crash leaves either the old or the new
//! file, never a torn one. It is written only when a position moved. The checkpoint of a
//! file that is gone (released, or not found again after a restart) is kept for a grace
//! period (`forget_after_secs`), then forgotten, so files that come and go do not pile up.

use crate::error::BuildError;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::fingerprint::Fingerprint;
use crate::event::{BatchNotifier, BatchStatus};

/// One file's saved position.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Checkpoint {
    pub fingerprint: Fingerprint,
    pub path: String,
    pub offset: u64,
    /// Unix seconds of the last change (of a gone file: when it went), to forget files not
    /// seen for a long time.
    pub updated: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct CheckpointFile {
    version: u32,
    checkpoints: Vec<Checkpoint>,
}

/// How long a checkpoint of a file no longer seen is kept, unless told otherwise.
const FORGET_AFTER_SECS: i64 = 7 * 24 * 3600;

#[derive(Debug)]
struct FileAcks {
    /// Distinguishes a file's successive lives (after truncation, the same fingerprint may
    /// come back and must not take late acknowledgements of its previous life).
    epoch: u64,
    path: String,
    /// Batches sent and not yet at the front-done position: (sequence, end offset, status).
    pending: VecDeque<(u64, u64, Option<BatchStatus>)>,
    next_seq: u64,
    /// Position up to which everything is acknowledged.
    acked: u64,
    /// An errored batch blocks the position until restart.
    stuck: bool,
    /// The file was released while batches were in flight: becomes dormant when they are in.
    released: bool,
    updated: i64,
}

#[derive(Debug, Default)]
struct Inner {
    files: HashMap<Fingerprint, FileAcks>,
    /// Checkpoints loaded at start for files not (yet) seen again.
    dormant: BTreeMap<Fingerprint, Checkpoint>,
    next_epoch: u64,
    dirty: bool,
}

impl Inner {
    /// A released file with nothing in flight moves from the live set to the dormant one.
    fn retire_if_released(&mut self, fp: &Fingerprint) {
        if let Some(f) = self.files.get(fp)
            && f.released
            && f.pending.is_empty()
        {
            // The grace period before it is forgotten starts now.
            let c = Checkpoint {
                fingerprint: fp.clone(),
                path: f.path.clone(),
                offset: f.acked,
                updated: now_secs(),
            };
            self.files.remove(fp);
            self.dormant.insert(fp.clone(), c);
        }
    }
}

/// The acknowledgement state of every file of one source; cheap to clone.
#[derive(Clone, Debug)]
pub struct Checkpointer {
    inner: Arc<Mutex<Inner>>,
    path: Option<PathBuf>,
    /// Seconds a gone file's checkpoint is kept.
    forget_after: i64,
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Checkpointer {
    /// Loads the checkpoints of `dir` (missing file: none). A checkpoint file that cannot be
    /// read is reported and set aside (renamed with `.corrupt`), not a reason to stop.
    pub fn load(dir: &Path) -> Result<Self, BuildError> {
        std::fs::create_dir_all(dir).map_err(|source| BuildError::Io {
            what: "cannot create the checkpoint directory",
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("checkpoints.json");
        let mut inner = Inner::default();
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<CheckpointFile>(&bytes) {
                Ok(file) => {
                    for c in file.checkpoints {
                        inner.dormant.insert(c.fingerprint.clone(), c);
                    }
                }
                Err(e) => {
                    let aside = path.with_extension("json.corrupt");
                    let _ = std::fs::rename(&path, &aside);
                    tracing::error!(
                        path = %path.display(),
                        moved_to = %aside.display(),
                        error = %e,
                        "checkpoint file is unreadable; files will be read per read_from"
                    );
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                let what = "cannot read the checkpoint file";
                return Err(BuildError::Io { what, path, source });
            }
        }
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
            path: Some(path),
            forget_after: FORGET_AFTER_SECS,
        })
    }

    /// Keeps the checkpoint of a gone file for `grace` (default 7 days).
    pub fn forget_after(mut self, grace: std::time::Duration) -> Self {
        self.forget_after = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The saved position of a file, if any.
    pub fn saved(&self, fp: &Fingerprint) -> Option<u64> {
        let inner = self.lock();
        inner.files.get(fp).map(|f| f.acked).or_else(|| inner.dormant.get(fp).map(|c| c.offset))
    }

    /// Starts tracking a file read from `offset`; returns its epoch.
    pub fn open(&self, fp: &Fingerprint, path: &str, offset: u64) -> u64 {
        let mut inner = self.lock();
        inner.dormant.remove(fp);
        inner.next_epoch += 1;
        let epoch = inner.next_epoch;
        inner.files.insert(
            fp.clone(),
            FileAcks {
                epoch,
                path: path.to_string(),
                pending: VecDeque::new(),
                next_seq: 0,
                acked: offset,
                stuck: false,
                released: false,
                updated: now_secs(),
            },
        );
        inner.dirty = true;
        epoch
    }

    /// Records a new path for a renamed file.
    pub fn rename(&self, fp: &Fingerprint, path: &str) {
        let mut inner = self.lock();
        if let Some(f) = inner.files.get_mut(fp) {
            f.path = path.to_string();
            inner.dirty = true;
        }
    }

    /// Forgets a file whose content is gone (truncated): its fingerprint may come back with
    /// new content that must be read from the start.
    pub fn forget(&self, fp: &Fingerprint) {
        let mut inner = self.lock();
        inner.files.remove(fp);
        inner.dormant.remove(fp);
        inner.dirty = true;
    }

    /// Stops tracking a file that was read to its end and released; its position is kept.
    pub fn release(&self, fp: &Fingerprint) {
        let mut inner = self.lock();
        if let Some(f) = inner.files.get_mut(fp) {
            f.released = true;
        }
        inner.retire_if_released(fp);
    }

    /// Registers a batch ending at `end_offset` and returns the notifier to attach to its
    /// events. A batch without events is done at once (when the notifier is dropped).
    pub fn batch(&self, fp: &Fingerprint, epoch: u64, end_offset: u64) -> BatchNotifier {
        let seq = {
            let mut inner = self.lock();
            match inner.files.get_mut(fp) {
                Some(f) if f.epoch == epoch => {
                    let seq = f.next_seq;
                    f.next_seq += 1;
                    f.pending.push_back((seq, end_offset, None));
                    Some(seq)
                }
                _ => None,
            }
        };
        let this = self.clone();
        let fp = fp.clone();
        BatchNotifier::with_callback(move |status| {
            if let Some(seq) = seq {
                this.ack(&fp, epoch, seq, status);
            }
        })
    }

    fn ack(&self, fp: &Fingerprint, epoch: u64, seq: u64, status: BatchStatus) {
        let mut inner = self.lock();
        let Some(f) = inner.files.get_mut(fp) else { return };
        if f.epoch != epoch {
            return;
        }
        if let Some(entry) = f.pending.iter_mut().find(|e| e.0 == seq) {
            entry.2 = Some(status);
        }
        let mut advanced = false;
        while let Some(&(_, offset, Some(st))) = f.pending.front() {
            if st == BatchStatus::Errored || f.stuck {
                if !f.stuck {
                    tracing::error!(
                        path = %f.path,
                        offset = f.acked,
                        "events of this file were not delivered; its checkpoint stays at this \
                         offset and they will be read again after a restart"
                    );
                }
                f.stuck = true;
                break;
            }
            f.acked = offset;
            f.pending.pop_front();
            advanced = true;
        }
        if advanced {
            f.updated = now_secs();
            inner.dirty = true;
        }
        inner.retire_if_released(fp);
    }

    /// Batches sent and not yet acknowledged, over all files.
    pub fn unacknowledged(&self) -> usize {
        self.lock().files.values().map(|f| if f.stuck { 0 } else { f.pending.len() }).sum()
    }

    /// Acknowledged position of a file (for tests and metrics).
    pub fn acked(&self, fp: &Fingerprint) -> Option<u64> {
        self.lock().files.get(fp).map(|f| f.acked)
    }

    /// Writes the checkpoint file if anything changed.
    pub fn write(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let snapshot = {
            let mut inner = self.lock();
            let cutoff = now_secs().saturating_sub(self.forget_after);
            let before = inner.dormant.len();
            inner.dormant.retain(|_, c| c.updated >= cutoff);
            if inner.dormant.len() != before {
                inner.dirty = true;
            }
            if !inner.dirty {
                return Ok(());
            }
            inner.dirty = false;
            let mut all: Vec<Checkpoint> = inner
                .files
                .iter()
                .map(|(fp, f)| Checkpoint {
                    fingerprint: fp.clone(),
                    path: f.path.clone(),
                    offset: f.acked,
                    updated: f.updated,
                })
                .collect();
            all.extend(inner.dormant.values().cloned());
            all.sort_by(|a, b| a.path.cmp(&b.path).then(a.fingerprint.cmp(&b.fingerprint)));
            CheckpointFile { version: 1, checkpoints: all }
        };
        let tmp = path.with_extension("json.tmp");
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            let mut w = std::io::BufWriter::new(&mut f);
            serde_json::to_writer(&mut w, &snapshot)?;
            w.write_all(b"\n")?;
            w.flush()?;
            drop(w);
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent()
                && let Ok(d) = std::fs::File::open(dir)
            {
                let _ = d.sync_all();
            }
            Ok::<_, std::io::Error>(())
        })();
        if result.is_err() {
            // Try again next time.
            self.lock().dirty = true;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventStatus};

    #[test]
    fn advances_only_over_contiguous_acknowledged_batches() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpointer::load(dir.path()).unwrap();
        let fp = Fingerprint::for_test("a");
        let epoch = cp.open(&fp, "/x", 0);
        let n1 = cp.batch(&fp, epoch, 100);
        let n2 = cp.batch(&fp, epoch, 200);
        let n3 = cp.batch(&fp, epoch, 300);
        let e1 = Event::from_message("1").with_notifier(&n1);
        drop((n1, n2));
        assert_eq!(cp.acked(&fp), Some(0), "batch 2 is done but batch 1 is not");
        drop(e1);
        assert_eq!(cp.acked(&fp), Some(200));
        let e3 = Event::from_message("3").with_notifier(&n3);
        drop(n3);
        e3.update_status(EventStatus::Errored);
        drop(e3);
        assert_eq!(cp.acked(&fp), Some(200), "errored batch holds the position");
        let n4 = cp.batch(&fp, epoch, 400);
        drop(n4);
        assert_eq!(cp.acked(&fp), Some(200));

        cp.write().unwrap();
        let again = Checkpointer::load(dir.path()).unwrap();
        assert_eq!(again.saved(&fp), Some(200));
    }

    #[test]
    fn late_acks_of_a_forgotten_file_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpointer::load(dir.path()).unwrap();
        let fp = Fingerprint::for_test("a");
        let old = cp.open(&fp, "/x", 0);
        let n = cp.batch(&fp, old, 500);
        cp.forget(&fp);
        cp.open(&fp, "/x", 0);
        drop(n);
        assert_eq!(cp.acked(&fp), Some(0));
    }

    #[test]
    fn a_corrupt_checkpoint_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("checkpoints.json"), b"{\"version\": 1, \"checkp").unwrap();
        let cp = Checkpointer::load(dir.path()).unwrap();
        assert_eq!(cp.saved(&Fingerprint::for_test("a")), None);
        assert!(dir.path().join("checkpoints.json.corrupt").exists());
    }
}
