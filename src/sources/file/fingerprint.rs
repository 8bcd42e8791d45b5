//! File identity: a checksum of the file's first line (at most `fingerprint_bytes` of it).
//!
//! Inode numbers are reused as soon as a file is deleted, so they cannot tell a new file from
//! an old one; a checksum of the first bytes can, and it follows a file through renames and
//! into the copy that `copytruncate` makes. A file has no fingerprint until its first line is
//! complete or it holds `fingerprint_bytes` bytes, so the fingerprint never changes as the file
//! grows. Two files that begin with the same line share a fingerprint (as in Vector): give
//! them distinct first lines, or set `fingerprint_bytes` high enough to tell them apart.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use serde::{Deserialize, Serialize};

/// A file's identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Fingerprint {
    /// Reads the first bytes of `file` (without moving its cursor). `None` while the file is
    /// too short to be identified.
    pub fn of(file: &File, max_bytes: usize) -> io::Result<Option<Self>> {
        let mut buf = vec![0u8; max_bytes.max(1)];
        let mut filled = 0;
        while filled < buf.len() {
            let n = file.read_at(&mut buf[filled..], filled as u64)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        Ok(Self::of_bytes(&buf[..filled], max_bytes))
    }

    /// The fingerprint of a file that begins with `head`.
    pub fn of_bytes(head: &[u8], max_bytes: usize) -> Option<Self> {
        let used = match memchr::memchr(b'\n', head) {
            Some(nl) => &head[..=nl],
            None if head.len() >= max_bytes => &head[..max_bytes],
            None => return None,
        };
        let crc = crc32fast::hash(used);
        Some(Self(format!("{crc:08x}-{}", used.len())))
    }

    #[cfg(test)]
    pub fn for_test(s: &str) -> Self {
        Self(s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_as_the_file_grows() {
        assert_eq!(Fingerprint::of_bytes(b"first li", 256), None);
        let a = Fingerprint::of_bytes(b"first line\n", 256).unwrap();
        let b = Fingerprint::of_bytes(b"first line\nsecond line\n", 256).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, Fingerprint::of_bytes(b"other line\n", 256).unwrap());
        let long = vec![b'x'; 300];
        assert_eq!(Fingerprint::of_bytes(&long[..256], 256), Fingerprint::of_bytes(&long, 256));
    }
}
