//! Change detection: which files may have new data, and when the globs must be walked again.
//!
//! The directories the `include` patterns can match in are watched with inotify (through the
//! `notify` crate; kqueue or FSEvents elsewhere): a write marks its file, a file created,
//! removed or renamed asks for a rescan. When nothing changes nothing is done, however many
//! files are matched. When the kernel's event queue overflows, every file is read again and the
//! globs are walked again, so no change is lost. Where no watch can be set (inotify limits,
//! file systems without events such as NFS), the source polls instead.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

/// What happened since the last [`Changes::take`].
#[derive(Debug, Default)]
pub struct Pending {
    /// Paths written to (or created, removed, renamed).
    pub paths: HashSet<PathBuf>,
    /// A file was created, removed or renamed: the globs must be walked again.
    pub rescan: bool,
    /// Events were lost: every file must be checked.
    pub overflow: bool,
}

/// A live watch on the directories of some glob patterns.
pub struct Changes {
    pending: Arc<Mutex<Pending>>,
    wake: Arc<tokio::sync::Notify>,
    _watcher: RecommendedWatcher,
}

impl Changes {
    /// Watches the directories that `include` can match in.
    pub fn watch(include: &[String]) -> notify::Result<Self> {
        let pending = Arc::new(Mutex::new(Pending::default()));
        let wake = Arc::new(tokio::sync::Notify::new());
        let (p, w) = (Arc::clone(&pending), Arc::clone(&wake));
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
                match event {
                    Ok(event) => {
                        if event.need_rescan() {
                            p.overflow = true;
                        }
                        match event.kind {
                            EventKind::Access(_) => return,
                            EventKind::Modify(notify::event::ModifyKind::Data(_)) => {}
                            EventKind::Modify(notify::event::ModifyKind::Metadata(_)) => return,
                            _ => p.rescan = true,
                        }
                        p.paths.extend(event.paths);
                    }
                    // The watcher lost track (its queue overflowed, a watch went away).
                    Err(_) => p.overflow = true,
                }
                drop(p);
                w.notify_one();
            })?;
        let mut roots: Vec<(PathBuf, RecursiveMode)> = include.iter().map(|p| root(p)).collect();
        roots.sort();
        roots.dedup();
        for (dir, mode) in roots {
            watcher.watch(&dir, mode)?;
        }
        Ok(Self { pending, wake, _watcher: watcher })
    }

    /// Takes what happened since the last call.
    pub fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Notified after each change.
    pub fn wake(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.wake)
    }
}

/// The directory to watch for a glob pattern: its path up to the first component with a
/// wildcard, watched recursively when a directory part has one (`/var/log/pods/*/*/*.log`),
/// else only that directory (`/var/log/app/*.log`, `/var/log/app.log`).
fn root(pattern: &str) -> (PathBuf, RecursiveMode) {
    let path = Path::new(pattern);
    let wild = |c: &Component| c.as_os_str().to_string_lossy().contains(['*', '?', '[', '{']);
    let components: Vec<Component> = path.components().collect();
    let first_wild = components.iter().position(wild).unwrap_or(components.len() - 1);
    let dir: PathBuf = components[..first_wild].iter().collect();
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    let mode = if first_wild + 1 < components.len() {
        RecursiveMode::Recursive
    } else {
        RecursiveMode::NonRecursive
    };
    (dir, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_the_literal_prefix_of_a_pattern() {
        assert_eq!(
            root("/var/log/app/*.log"),
            ("/var/log/app".into(), RecursiveMode::NonRecursive)
        );
        assert_eq!(root("/var/log/app.log"), ("/var/log".into(), RecursiveMode::NonRecursive));
        assert_eq!(
            root("/var/log/pods/*/*/*.log"),
            ("/var/log/pods".into(), RecursiveMode::Recursive)
        );
        assert_eq!(root("/var/log/**/x.log"), ("/var/log".into(), RecursiveMode::Recursive));
        assert_eq!(root("*.log"), (".".into(), RecursiveMode::NonRecursive));
    }

    /// Waits (10 s at most) until what happened satisfies `check`.
    async fn until(changes: &Changes, check: impl Fn(&Pending) -> bool) -> bool {
        let wake = changes.wake();
        let deadline = std::time::Duration::from_secs(10);
        loop {
            if tokio::time::timeout(deadline, wake.notified()).await.is_err() {
                return false;
            }
            if check(&changes.take()) {
                return true;
            }
        }
    }

    #[tokio::test]
    async fn a_write_marks_its_file_and_a_new_file_asks_for_a_rescan() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        std::fs::write(&log, "one\n").unwrap();
        let changes = Changes::watch(&[format!("{}/*.log", dir.path().display())]).unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(b"two\n").unwrap();
        assert!(until(&changes, |p| p.paths.contains(&log) && !p.rescan).await);
        std::fs::write(dir.path().join("b.log"), "new\n").unwrap();
        assert!(until(&changes, |p| p.rescan).await);
    }
}
