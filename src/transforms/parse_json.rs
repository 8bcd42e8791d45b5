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
use crate::component::TransformComponent;
use crate::error::ConfigIssue;
use crate::metrics::ComponentMetrics;

/// `[transforms.<id>] type = "parse_json"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseJsonConfig {
    /// The field to parse. Default `message`.
    #[serde(default = "crate::transforms::parse::default_field")]
    pub field: String,
    /// Where the parsed fields go: unset merges them into the event's root; a path nests
    /// them under it.
    #[serde(default)]
    pub target: Option<String>,
    /// Send events that fail to parse to the `<id>.errors` output instead of passing them on
    /// with an `error.message` field. Default false.
    #[serde(default)]
    pub drop_on_error: bool,
}

impl TransformComponent for ParseJsonConfig {
    type Built = ParseTransform<JsonParser>;

    fn concurrent(&self) -> bool {
        true
    }

    fn build(&self, metrics: &ComponentMetrics) -> Result<ParseTransform<JsonParser>, ConfigIssue> {
        let options = ParseOptions {
            field: self.field.clone(),
            target: self.target.clone(),
            drop_on_error: self.drop_on_error,
        };
        ParseTransform::new("parse_json", JsonParser::default(), &options, metrics)
    }

    fn outputs(&self) -> Vec<String> {
        vec![crate::transforms::parse::ERRORS_OUTPUT.to_string()]
    }
}

/// The JSON parser. Remembers the size of what it parsed last, counted while parsing.
#[derive(Default)]
pub struct JsonParser {
    last_size: usize,
}

impl Parser for JsonParser {
    fn parse(&mut self, input: &Bytes) -> Result<Value, String> {
        let (value, size) = parse_json_sized(input).map_err(|e| format!("invalid JSON: {e}"))?;
        self.last_size = size;
        Ok(value)
    }

    fn estimated_size(&self, _value: &Value) -> usize {
        self.last_size
    }

    /// The top-level object's fields are parsed into a vector, then inserted into the root:
    /// one tree insertion per field, and the root is untouched if the text is not valid.
    fn parse_into_root(
        &mut self,
        input: &Bytes,
        root: &mut ObjectMap,
    ) -> Option<Result<usize, String>> {
        Some(parse_fields(input).map(|(fields, size)| {
            let nodes_before = crate::event::map_nodes_bytes(root.len());
            if root.is_empty() {
                // A line's tree is empty: sorting the fields and building the map at once
                // costs a quarter less than inserting them one by one. Of repeated keys the
                // last wins.
                *root = fields.into_iter().collect();
            } else {
                for (k, v) in fields {
                    root.insert(k, v);
                }
            }
            size + crate::event::map_nodes_bytes(root.len()) - nodes_before
        }))
    }
}

/// Parses a JSON object into its fields, in order, with their estimated heap size.
fn parse_fields(input: &Bytes) -> Result<(Vec<(KeyString, Value)>, usize), String> {
    let text = simdutf8::basic::from_utf8(input)
        .map_err(|_| "invalid JSON: not valid UTF-8 (JSON text is UTF-8)".to_string())?;
    let size = std::cell::Cell::new(0);
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = de
        .deserialize_map(FieldsVisitor(ValueSeed { input, size: &size }))
        .and_then(|f| de.end().map(|()| f))
        .map_err(|e| {
            if e.is_data() {
                format!("parsed value is not an object; set `target` to keep it ({e})")
            } else {
                format!("invalid JSON: {e}")
            }
        })?;
    Ok((fields, size.get()))
}

/// Collects an object's fields without building a map.
struct FieldsVisitor<'a>(ValueSeed<'a>);

impl<'de> Visitor<'de> for FieldsVisitor<'_> {
    type Value = Vec<(KeyString, Value)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(16);
        while let Some(key) = map.next_key::<KeyVisitorOut>()? {
            let value = map.next_value_seed(self.0)?;
            self.0.add(key.0.len() + STRING_OVERHEAD);
            fields.push((key.0, value));
        }
        Ok(fields)
    }
}

/// Parses JSON text into a VRL value. Strings without escapes are slices of `input`, not
/// copies: one allocation fewer per string field.
pub fn parse_json(input: &Bytes) -> Result<Value, String> {
    parse_json_sized(input).map(|(v, _)| v)
}

/// Parses JSON text, returning the value and its estimated heap size
/// ([`crate::event::estimate_size`], counted on the way).
///
/// The whole text is checked as UTF-8 once (SIMD, `simdutf8`) and then parsed as `str`, so
/// `serde_json` does not validate each string again: JSON is UTF-8 by definition (RFC 8259).
pub fn parse_json_sized(input: &Bytes) -> Result<(Value, usize), String> {
    let text = simdutf8::basic::from_utf8(input)
        .map_err(|_| "not valid UTF-8 (JSON text is UTF-8)".to_string())?;
    let size = std::cell::Cell::new(0);
    let mut de = serde_json::Deserializer::from_str(text);
    let value = ValueSeed { input, size: &size }.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok((value, size.get()))
}

#[derive(Clone, Copy)]
struct ValueSeed<'a> {
    input: &'a Bytes,
    size: &'a std::cell::Cell<usize>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor(self))
    }
}

struct ValueVisitor<'a>(ValueSeed<'a>);

impl ValueSeed<'_> {
    fn add(&self, bytes: usize) {
        self.size.set(self.size.get() + bytes);
    }
}

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
        self.0.add(v.len() + STRING_OVERHEAD);
        // `v` points into the input when the string had no escapes.
        let input = self.0.input;
        let start = (v.as_ptr() as usize).wrapping_sub(input.as_ptr() as usize);
        if start <= input.len() && v.len() <= input.len() - start {
            Ok(Value::Bytes(input.slice(start..start + v.len())))
        } else {
            Ok(Value::Bytes(Bytes::copy_from_slice(v.as_bytes())))
        }
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        self.0.add(v.len() + STRING_OVERHEAD);
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
        while let Some(v) = seq.next_element_seed(self.0)? {
            items.push(v);
        }
        self.0.add(STRING_OVERHEAD + items.len() * std::mem::size_of::<Value>());
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = ObjectMap::new();
        while let Some(key) = map.next_key::<KeyVisitorOut>()? {
            let value = map.next_value_seed(self.0)?;
            self.0.add(key.0.len() + STRING_OVERHEAD);
            // Of repeated keys the last wins, as in other JSON parsers.
            out.insert(key.0, value);
        }
        self.0.add(crate::event::map_nodes_bytes(out.len()));
        Ok(Value::Object(out))
    }
}

/// Heap bytes of one small allocation (see `event::estimate_size`).
const STRING_OVERHEAD: usize = 16;

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

    #[tokio::test]
    async fn keeps_the_transform_contract() {
        use crate::contract::{Expect, events, run_transform};
        let c: ParseJsonConfig = toml_edit::de::from_str("drop_on_error = true").unwrap();
        let (input, acks) = events(&[r#"{"a":1}"#, "{not json", r#"{"b":2}"#]);
        let run = run_transform(&c, "parse_json", input).await;
        assert_eq!(run.out.len(), 2);
        assert_eq!(run.named[0].len(), 1, "the failure goes to `errors`");
        assert_eq!(run.metrics.sent_events("errors"), 1);
        let expect = Expect {
            received: 3,
            sent: 2,
            errors: vec![("parse_failed", crate::metrics::Stage::Processing, 1)],
            status: Some(crate::event::BatchStatus::Delivered),
            ..Expect::default()
        };
        expect.check(run, Some(acks)).await;
    }

    #[test]
    fn target_nests() {
        let mut t = build("target = \"payload\"");
        let (out, _) = run(&mut t, 1, vec![Event::from_message("[1,2]")]);
        assert_eq!(json(&out[0]), r#"{"message":"[1,2]","payload":[1,2]}"#);
    }

    #[test]
    fn counted_size_matches_the_walk_and_the_last_duplicate_wins() {
        let input = Bytes::from_static(br#"{"b":[1,"two",{"c":null}],"a":"x\"y","d":{}}"#);
        let (value, size) = parse_json_sized(&input).unwrap();
        assert_eq!(size, crate::event::estimate_size(&value));
        let input = Bytes::from_static(br#"{"b":1,"a":2,"b":3}"#);
        let (value, _) = parse_json_sized(&input).unwrap();
        assert_eq!(serde_json::to_string(&value).unwrap(), r#"{"a":2,"b":3}"#);
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
