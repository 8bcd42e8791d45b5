//! Turning events into bytes: `encoding.codec = "json"` (one JSON object per line, the
//! default) or `"text"` (the bare `message`).
//!
//! Encoders are pure functions of the event, so their output is tested byte for byte.

use serde::Deserialize;

use crate::event::Event;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Codec {
    #[default]
    Json,
    Text,
}

/// `encoding` of a sink.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodingConfig {
    /// `json` (the event as one JSON object per line, the default) or `text` (its `message`
    /// alone).
    #[serde(default)]
    pub codec: Codec,
}

impl EncodingConfig {
    /// Appends `event` and a newline to `buf`.
    pub fn encode_line(&self, event: &Event, buf: &mut Vec<u8>) {
        match self.codec {
            Codec::Json => {
                // Serialising a VRL value into memory cannot fail: keys are strings and
                // floats are never NaN.
                let _ = serde_json::to_writer(&mut *buf, &event.view());
            }
            Codec::Text => {
                if let Some(m) = event.message() {
                    buf.extend_from_slice(m);
                } else if let Some(v) = event.get_top("message") {
                    buf.extend_from_slice(v.to_string_lossy().as_bytes());
                }
            }
        }
        buf.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_text_lines() {
        let mut e = Event::from_message("hello \"world\"");
        e.insert_key("status", 200.into());
        let mut buf = Vec::new();
        EncodingConfig { codec: Codec::Json }.encode_line(&e, &mut buf);
        EncodingConfig { codec: Codec::Text }.encode_line(&e, &mut buf);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "{\"message\":\"hello \\\"world\\\"\",\"status\":200}\nhello \"world\"\n"
        );
    }
}
