//! Bytes as lowercase hex (trace and span ids, content digests), written into one string.

use std::fmt::Write;

pub fn lower_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn two_digits_per_byte() {
        assert_eq!(super::lower_hex(&[0x00, 0x0a, 0xff]), "000aff");
    }
}
