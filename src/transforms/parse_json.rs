//! `parse_json`: parses a field holding JSON (by default `message`) into fields.
//!
//! Integers beyond `i64` (request ids of some model servers are `u64`) are kept exactly, as
//! decimal strings, rather than rounded through a float.

use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use vrl::value::{KeyString, ObjectMap, Value};

use super::parse::{ParseOptions, ParseTransform, Parser};
use crate::config::ConfigIssue;
use crate::metrics::ComponentMetrics;

/// `[transforms.<id>] type = "parse_json"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseJsonConfig {
    #[serde(default = "default_field")]
    pub field: String,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub drop_on_error: bool,
}

fn default_field() -> String {
    "message".into()
}

impl ParseJsonConfig {
    pub fn build(
        &self,
        metrics: &ComponentMetrics,
    ) -> Result<ParseTransform<JsonParser>, ConfigIssue> {
        let options = ParseOptions {
            field: self.field.clone(),
            target: self.target.clone(),
            drop_on_error: self.drop_on_error,
        };
        ParseTransform::new("parse_json", JsonParser, &options, metrics)
    }
}

/// The JSON parser.
pub struct JsonParser;

impl Parser for JsonParser {
    fn parse(&mut self, input: &Bytes) -> Result<Value, String> {
        parse_json(input).map_err(|e| format!("invalid JSON: {e}"))
    }
}

/// Parses JSON text into a VRL value. Strings without escapes are slices of `input`, not
/// copies: one allocation fewer per string field.
pub fn parse_json(input: &Bytes) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(input);
    let value = ValueSeed(input).deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

#[derive(Clone, Copy)]
struct ValueSeed<'a>(&'a Bytes);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor(self.0))
    }
}

struct ValueVisitor<'a>(&'a Bytes);

impl<'de> Visitor<'de> for ValueVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Boolean(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Integer(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => Value::Integer(i),
            // Exact, as text: a float would round it.
            Err(_) => Value::Bytes(Bytes::from(v.to_string())),
        })
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        ordered_float::NotNan::new(v)
            .map(Value::Float)
            .map_err(|_| E::custom("NaN is not a JSON number"))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Value, E> {
        // `v` points into the input when the string had no escapes.
        let base = self.0.as_ptr() as usize;
        let start = (v.as_ptr() as usize).wrapping_sub(base);
        if start <= self.0.len() && v.len() <= self.0.len() - start {
            Ok(Value::Bytes(self.0.slice(start..start + v.len())))
        } else {
            Ok(Value::Bytes(Bytes::copy_from_slice(v.as_bytes())))
        }
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Bytes(Bytes::copy_from_slice(v.as_bytes())))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element_seed(ValueSeed(self.0))? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = ObjectMap::new();
        while let Some(key) = map.next_key::<KeyVisitorOut>()? {
            let value = map.next_value_seed(ValueSeed(self.0))?;
            out.insert(key.0, value);
        }
        Ok(Value::Object(out))
    }
}

struct KeyVisitorOut(KeyString);

impl<'de> Deserialize<'de> for KeyVisitorOut {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct K;
        impl<'de> Visitor<'de> for K {
            type Value = KeyVisitorOut;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyVisitorOut, E> {
                Ok(KeyVisitorOut(KeyString::from(v)))
            }
        }
        d.deserialize_str(K)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::transforms::test_util::{json, metrics, run};

    fn build(toml: &str) -> ParseTransform<JsonParser> {
        let c: ParseJsonConfig = toml_edit::de::from_str(toml).unwrap();
        c.build(&metrics()).unwrap()
    }

    #[test]
    fn merges_into_root_and_keeps_big_ids_exact() {
        let mut t = build("");
        let e = Event::from_message(
            r#"{"request_id": 18446744073709551615, "latency_ms": 12.5, "model": "resnet"}"#,
        );
        let (out, _) = run(&mut t, 1, vec![e]);
        let s = json(&out[0]);
        assert!(s.contains(r#""request_id":"18446744073709551615""#), "{s}");
        assert!(s.contains(r#""latency_ms":12.5"#), "{s}");
        assert!(s.contains(r#""model":"resnet""#), "{s}");
    }

    #[test]
    fn failure_keeps_the_event_with_an_error() {
        let mut t = build("");
        let (out, errors) = run(&mut t, 1, vec![Event::from_message("{not json")]);
        assert_eq!(out.len(), 1);
        assert!(errors[0].is_empty());
        let s = json(&out[0]);
        assert!(
            s.contains(r#""error":{"message":"parse_json: invalid JSON: key must be a string"#),
            "{s}"
        );
        assert!(s.contains(r#""message":"{not json""#), "{s}");
    }

    #[test]
    fn drop_on_error_routes_to_errors_output() {
        let mut t = build("drop_on_error = true");
        let (out, errors) =
            run(&mut t, 1, vec![Event::from_message("[1,2]"), Event::from_message(r#"{"a":1}"#)]);
        assert_eq!(out.len(), 1);
        assert_eq!(errors[0].len(), 1, "arrays cannot merge into the root");
    }

    #[test]
    fn target_nests() {
        let mut t = build("target = \"payload\"");
        let (out, _) = run(&mut t, 1, vec![Event::from_message("[1,2]")]);
        assert_eq!(json(&out[0]), r#"{"message":"[1,2]","payload":[1,2]}"#);
    }

    #[test]
    fn invalid_utf8_and_garbage_do_not_panic() {
        let mut t = build("");
        let garbage: Vec<Event> = [&b"\xff\xfe{"[..], b"\x00\x01", b"{\"a\":\"\xff\"}", b""]
            .iter()
            .map(|b| Event::from_message(b.to_vec()))
            .collect();
        let (out, _) = run(&mut t, 1, garbage);
        assert_eq!(out.len(), 4);
    }
}
