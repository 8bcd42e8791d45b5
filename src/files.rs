//! Writing to files.

use std::io::{self, Write};

/// The most one `write(2)` hands the kernel. Larger writes were often slow on the 2-vCPU
/// guests weir is benchmarked on: `dd` of 256 MiB to a new file, eight rounds, took 93 to
/// 101 ms at 64 KiB a write but once 238, and 86 to 780 ms at 512 KiB, over 300 in four
/// rounds; 32 KiB was never slow but 10% slower at best. The time goes to the kernel's copy
/// into new page-cache pages: the likely cause is that a larger write gets folios of a higher
/// order (ext4 with large folios, Linux 6.x), taken from the large free blocks the guest's
/// balloon has handed back to the host (free page reporting), whose first touch faults in
/// the host. The regex scenario of `benches/compare` (writes of up to 256 KiB before) ran
/// 1.6 times as fast (BENCHMARKS.md); the extra system calls cost little.
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
