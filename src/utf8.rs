//! Bytes as text, with invalid UTF-8 replaced by U+FFFD.

use std::borrow::Cow;

/// `String::from_utf8_lossy` with a fast path: std's lossy conversion checks byte by byte,
/// which was a tenth of the instructions of syslog -> Loki (every message, line and label
/// value goes through it); valid text, nearly always the case, is checked with SIMD instead.
pub fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::lossy;

    #[test]
    fn valid_text_is_borrowed_and_invalid_bytes_are_replaced() {
        assert!(matches!(lossy("héllo".as_bytes()), std::borrow::Cow::Borrowed("héllo")));
        assert_eq!(lossy(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(lossy(b""), "");
    }
}
