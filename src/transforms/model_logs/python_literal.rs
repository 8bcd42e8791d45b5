//! A parser for Python literals as `repr()` writes them: the `{'feature1': 0.75, ...}` that
//! model servers print when they log a request's input.
//!
//! Grammar (a subset of Python's `ast.literal_eval`, plus numpy 2's scalar reprs):
//! `dict` `{k: v, ...}`, `list` `[...]`, `tuple` `(...)`, `set` `{a, b}`, strings in single or
//! double quotes (with `b`, `r`, `u` prefixes and the usual backslash escapes), integers (with
//! `_` separators), floats (`1.5`, `1e-3`, `inf`, `nan`), `True`, `False`, `None`, and calls of
//! the shape `np.float64(0.75)` / `numpy.int64(3)` / `np.str_('a')`, read as their argument.
//!
//! Why not a crate: no maintained Rust crate parses Python literals without embedding a Python
//! interpreter (`pyo3`) or a full Python parser (`rustpython-parser`, tens of thousands of lines
//! and slow to build); this is a few hundred lines with no dependency.
//!
//! Invariant: any input, however malformed, gives an error and never a panic; nesting is
//! limited to [`MAX_DEPTH`] so a hostile line cannot overflow the stack.

use bytes::Bytes;
use ordered_float::NotNan;
use vrl::value::{KeyString, ObjectMap, Value};

/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 64;

/// Parses one literal; the whole input must be consumed (surrounding spaces allowed).
pub fn parse(text: &str) -> Result<Value, String> {
    let mut p = Parser { s: text.as_bytes(), pos: 0, text };
    p.skip_ws();
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(format!("unexpected `{}` at offset {}", p.rest_preview(), p.pos));
    }
    Ok(v)
}

/// Parses a literal at the start of `text`; returns it and the number of bytes it took.
pub fn parse_prefix(text: &str) -> Result<(Value, usize), String> {
    let mut p = Parser { s: text.as_bytes(), pos: 0, text };
    p.skip_ws();
    let v = p.value(0)?;
    Ok((v, p.pos))
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn rest_preview(&self) -> String {
        self.text.get(self.pos..).unwrap_or("").chars().take(12).collect()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected `{}` at offset {}", c as char, self.pos))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        match self.peek() {
            None => Err("unexpected end of input".into()),
            Some(b'{') => self.dict_or_set(depth),
            Some(b'[') => self.sequence(b']', depth),
            Some(b'(') => self.sequence(b')', depth),
            Some(b'\'' | b'"') => self.string(false).map(Value::Bytes),
            Some(c) if c == b'-' || c == b'+' || c == b'.' || c.is_ascii_digit() => self.number(),
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => self.word(depth),
            Some(_) => Err(format!("unexpected `{}` at offset {}", self.rest_preview(), self.pos)),
        }
    }

    /// `{}` is an empty dict, `{k: v}` a dict, `{a, b}` a set (a list here).
    fn dict_or_set(&mut self, depth: usize) -> Result<Value, String> {
        self.expect(b'{')?;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(ObjectMap::new()));
        }
        let first = self.value(depth + 1)?;
        self.skip_ws();
        if self.peek() != Some(b':') {
            // A set: the rest are plain values.
            let mut items = vec![first];
            return self.rest_of_sequence(&mut items, b'}', depth).map(|()| Value::Array(items));
        }
        let mut map = ObjectMap::new();
        let mut key = first;
        loop {
            self.expect(b':')?;
            self.skip_ws();
            let v = self.value(depth + 1)?;
            map.insert(key_string(&key)?, v);
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        return Ok(Value::Object(map));
                    }
                    key = self.value(depth + 1)?;
                    self.skip_ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(map));
                }
                _ => return Err(format!("expected `,` or `}}` at offset {}", self.pos)),
            }
        }
    }

    fn sequence(&mut self, close: u8, depth: usize) -> Result<Value, String> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        items.push(self.value(depth + 1)?);
        self.rest_of_sequence(&mut items, close, depth)?;
        Ok(Value::Array(items))
    }

    /// After the first item: `, item`* then the closing bracket (a trailing comma allowed).
    fn rest_of_sequence(
        &mut self,
        items: &mut Vec<Value>,
        close: u8,
        depth: usize,
    ) -> Result<(), String> {
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        return Ok(());
                    }
                    items.push(self.value(depth + 1)?);
                }
                Some(c) if c == close => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => {
                    return Err(format!(
                        "expected `,` or `{}` at offset {}",
                        close as char, self.pos
                    ));
                }
            }
        }
    }

    /// A quoted string; `raw` when an `r` prefix was read.
    fn string(&mut self, raw: bool) -> Result<Bytes, String> {
        let quote = self.peek().ok_or("unexpected end of input")?;
        let start = self.pos;
        // Triple quotes.
        let triple = self.s.get(self.pos..self.pos + 3) == Some(&[quote, quote, quote][..]);
        self.pos += if triple { 3 } else { 1 };
        let mut out = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(format!("unterminated string starting at offset {start}"));
            };
            if c == quote {
                if !triple {
                    self.pos += 1;
                    break;
                }
                if self.s.get(self.pos..self.pos + 3) == Some(&[quote, quote, quote][..]) {
                    self.pos += 3;
                    break;
                }
            }
            if c == b'\\' && !raw {
                self.pos += 1;
                let e = self.peek().ok_or("unterminated escape")?;
                self.pos += 1;
                match e {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'0' => out.push(0),
                    b'\\' => out.push(b'\\'),
                    b'\'' => out.push(b'\''),
                    b'"' => out.push(b'"'),
                    b'\n' => {}
                    b'x' => out.extend(self.hex_char(2)?),
                    b'u' => out.extend(self.hex_char(4)?),
                    b'U' => out.extend(self.hex_char(8)?),
                    other => {
                        // Python keeps unknown escapes as written.
                        out.push(b'\\');
                        out.push(other);
                    }
                }
                continue;
            }
            out.push(c);
            self.pos += 1;
        }
        Ok(Bytes::from(out))
    }

    fn hex_char(&mut self, digits: usize) -> Result<Vec<u8>, String> {
        let hex = self
            .s
            .get(self.pos..self.pos + digits)
            .and_then(|h| std::str::from_utf8(h).ok())
            .ok_or("truncated escape")?;
        let code = u32::from_str_radix(hex, 16).map_err(|_| format!("bad escape `{hex}`"))?;
        self.pos += digits;
        let c = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
        let mut buf = [0u8; 4];
        Ok(c.encode_utf8(&mut buf).as_bytes().to_vec())
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.pos;
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.pos += 1;
        }
        // `-inf`, `+nan`.
        if self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            let negative = self.s[start] == b'-';
            let word = self.ident();
            return match word {
                "inf" => Ok(float(if negative { f64::NEG_INFINITY } else { f64::INFINITY })),
                "nan" => Ok(Value::Null),
                _ => Err(format!("unexpected `{word}` at offset {start}")),
            };
        }
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'+' | b'-'))
        {
            // A sign only continues a number right after an exponent marker.
            let c = self.s[self.pos];
            if matches!(c, b'+' | b'-') && !matches!(self.s[self.pos - 1], b'e' | b'E') {
                break;
            }
            self.pos += 1;
        }
        let text: String = self.text[start..self.pos].chars().filter(|&c| c != '_').collect();
        let digits = text.trim_start_matches(['-', '+']);
        let is_int = digits.bytes().all(|c| c.is_ascii_digit()) && !digits.is_empty();
        if is_int {
            return Ok(match text.parse::<i64>() {
                Ok(i) => Value::Integer(i),
                // Beyond i64: exact, as text (the same rule as parse_json).
                Err(_) => Value::Bytes(Bytes::from(text.trim_start_matches('+').to_string())),
            });
        }
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
            if let Some(d) = digits.strip_prefix(prefix) {
                let v = i64::from_str_radix(d, radix)
                    .map_err(|_| format!("bad number `{text}` at offset {start}"))?;
                return Ok(Value::Integer(if text.starts_with('-') { -v } else { v }));
            }
        }
        text.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(float)
            .ok_or_else(|| format!("bad number `{text}` at offset {start}"))
    }

    fn ident(&mut self) -> &str {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.') {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    fn word(&mut self, depth: usize) -> Result<Value, String> {
        let start = self.pos;
        // String prefixes: b'..', r'..', u'..', rb'..', br'..'.
        let prefix_len = self.s[self.pos..]
            .iter()
            .take_while(|c| matches!(c.to_ascii_lowercase(), b'b' | b'r' | b'u'))
            .count();
        if prefix_len <= 2 && matches!(self.s.get(self.pos + prefix_len), Some(b'\'' | b'"')) {
            let raw =
                self.s[self.pos..self.pos + prefix_len].iter().any(|c| *c == b'r' || *c == b'R');
            self.pos += prefix_len;
            return self.string(raw).map(Value::Bytes);
        }
        let word = self.ident().to_string();
        match word.as_str() {
            "True" => return Ok(Value::Boolean(true)),
            "False" => return Ok(Value::Boolean(false)),
            "None" => return Ok(Value::Null),
            "inf" => return Ok(float(f64::INFINITY)),
            "nan" => return Ok(Value::Null),
            _ => {}
        }
        // numpy 2 scalar reprs: `np.float64(0.75)`; their argument is the value.
        let numpy = word.starts_with("np.") || word.starts_with("numpy.");
        if numpy && self.peek() == Some(b'(') {
            self.pos += 1;
            self.skip_ws();
            let v = self.value(depth + 1)?;
            self.skip_ws();
            self.expect(b')')?;
            return Ok(v);
        }
        Err(format!("unexpected `{word}` at offset {start}: not a Python literal"))
    }
}

fn float(f: f64) -> Value {
    // Only NaN fails, and callers never pass it.
    NotNan::new(f).map(Value::Float).unwrap_or(Value::Null)
}

/// Dict keys become field names: strings as they are, numbers and booleans as text.
fn key_string(key: &Value) -> Result<KeyString, String> {
    Ok(match key {
        Value::Bytes(b) => KeyString::from(String::from_utf8_lossy(b).into_owned()),
        Value::Integer(i) => KeyString::from(i.to_string()),
        Value::Float(f) => KeyString::from(f.to_string()),
        Value::Boolean(b) => KeyString::from(if *b { "True" } else { "False" }),
        Value::Null => KeyString::from("None"),
        other => return Err(format!("a {} cannot be a field name", other.kind_str())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> String {
        serde_json::to_string(&parse(text).unwrap()).unwrap()
    }

    #[test]
    fn dicts_as_python_prints_them() {
        assert_eq!(
            json("{'feature1': 0.75, 'feature2': 1.3}"),
            r#"{"feature1":0.75,"feature2":1.3}"#
        );
        assert_eq!(
            json(r#"{"a": [1, -2, 3.5e-2], 'b': (True, False, None), 'c': {}, 'd': ()}"#),
            r#"{"a":[1,-2,0.035],"b":[true,false,null],"c":{},"d":[]}"#
        );
        assert_eq!(json("{1: 'x', 2.5: 'y', }"), r#"{"1":"x","2.5":"y"}"#);
        assert_eq!(json("{'s'}"), r#"["s"]"#);
        assert_eq!(json("[1,]"), "[1]");
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(json(r#"'it\'s'"#), r#""it's""#);
        assert_eq!(json(r#""tab\there""#), r#""tab\there""#);
        assert_eq!(json(r"'\x41\u00e9'"), r#""Aé""#);
        assert_eq!(json(r"r'\d+'"), r#""\\d+""#);
        assert_eq!(json(r"b'bytes'"), r#""bytes""#);
        assert_eq!(json("'''tri'ple'''"), r#""tri'ple""#);
        assert_eq!(json("'naïve'"), r#""naïve""#);
    }

    #[test]
    fn numbers() {
        assert_eq!(json("1_000"), "1000");
        assert_eq!(json("-0.5"), "-0.5");
        assert_eq!(json("+3"), "3");
        assert_eq!(json("1e3"), "1000.0");
        assert_eq!(json("0x1f"), "31");
        assert_eq!(json("18446744073709551615"), r#""18446744073709551615""#);
        let Value::Array(special) = parse("[nan, inf, -inf]").unwrap() else { panic!() };
        assert_eq!(special[0], Value::Null);
        assert_eq!(special[1], float(f64::INFINITY));
        assert_eq!(special[2], float(f64::NEG_INFINITY));
    }

    #[test]
    fn numpy_scalars() {
        assert_eq!(
            json("{'a': np.float64(0.75), 'b': np.int64(3), 'c': np.str_('x')}"),
            r#"{"a":0.75,"b":3,"c":"x"}"#
        );
    }

    #[test]
    fn prefix_reports_length() {
        let (v, n) = parse_prefix("{'a': 1} | Prediction: x").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"a":1}"#);
        assert_eq!(n, 8);
    }

    #[test]
    fn malformed_input_is_an_error() {
        for bad in [
            "",
            "{",
            "{'a'",
            "{'a': }",
            "{'a': 1",
            "'unterminated",
            "[1 2]",
            "{'a': 1,, }",
            "os.system('x')",
            "1.2.3",
            "{[1]: 2}",
            "'\\x4'",
            "np.float64(1",
            "-",
            "0xzz",
            "{'a': 1} extra",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        let deep = "[".repeat(10_000);
        assert!(parse(&deep).unwrap_err().contains("nested deeper"));
    }
}
