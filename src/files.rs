//! Writing to files.

use std::io::{self, Write};

/// The most one `write(2)` hands the kernel. On virtual machines that hand free memory back
/// to their host, a larger write into new page-cache pages is often much slower (its larger
/// folios fault in the host on first touch), while the extra system calls of 64 KiB writes
/// cost little.
pub const MAX_WRITE_BYTES: usize = 64 * 1024;

/// `write_all`, at most [`MAX_WRITE_BYTES`] per system call.
pub fn write_all_in_pieces(mut file: &std::fs::File, data: &[u8]) -> io::Result<()> {
    for piece in data.chunks(MAX_WRITE_BYTES) {
        file.write_all(piece)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte arrives in order whatever the length against the piece size: empty, under,
    /// exactly and over one piece, and a last piece cut short.
    #[test]
    fn written_in_pieces_the_file_holds_every_byte_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        let mut expected = Vec::new();
        for len in [0, 1, MAX_WRITE_BYTES - 1, MAX_WRITE_BYTES, 3 * MAX_WRITE_BYTES + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            write_all_in_pieces(&file, &data).unwrap();
            expected.extend_from_slice(&data);
        }
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }
}
