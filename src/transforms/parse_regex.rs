//! `parse_regex`: named captures of a regular expression become fields.
//!
//! Works on bytes (`regex::bytes`), so a line that is not valid UTF-8 still matches; captured
//! values are slices of the original field, not copies. A capture name may be a path
//! (`(?P<http__method>...)` is not needed: write the field path in `types` or rename later).

use std::collections::BTreeMap;

use bytes::Bytes;
use regex::bytes::Regex;
use serde::Deserialize;
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use super::parse::{Conversion, ParseOptions, ParseTransform, Parser, parse_field};
use crate::component::TransformComponent;
use crate::error::ConfigIssue;
use crate::metrics::ComponentMetrics;

/// `[transforms.<id>] type = "parse_regex"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseRegexConfig {
    /// Patterns tried in order; the first that matches wins. `pattern` is one pattern.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Several patterns, tried in order; the first that matches wins.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Conversions of captures: `{ status = "int", latency = "float" }`.
    #[serde(default)]
    pub types: BTreeMap<String, Conversion>,
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

impl TransformComponent for ParseRegexConfig {
    type Built = ParseTransform<RegexParser>;

    fn concurrent(&self) -> bool {
        true
    }

    fn build(
        &self,
        metrics: &ComponentMetrics,
    ) -> Result<ParseTransform<RegexParser>, ConfigIssue> {
        let mut sources: Vec<&str> = self.pattern.iter().map(String::as_str).collect();
        sources.extend(self.patterns.iter().map(String::as_str));
        if sources.is_empty() {
            return Err(ConfigIssue::general(
                "set `pattern` (or `patterns`) to a regular expression with named captures",
            ));
        }
        let key = if self.pattern.is_some() { "pattern" } else { "patterns" };
        let mut regexes = Vec::new();
        for src in sources {
            let re = Regex::new(src)
                .map_err(|e| ConfigIssue::field(key, format!("invalid regular expression: {e}")))?;
            let mut captures = Vec::new();
            for (i, name) in re.capture_names().enumerate() {
                if let Some(name) = name {
                    captures.push(Capture {
                        index: i,
                        path: parse_field(name, key)?,
                        conversion: self.types.get(name).copied(),
                    });
                }
            }
            if captures.is_empty() {
                return Err(ConfigIssue::field(
                    key,
                    format!("the pattern `{src}` has no named captures (?P<name>...)"),
                ));
            }
            regexes.push((re, captures));
        }
        let options = ParseOptions {
            field: self.field.clone(),
            target: self.target.clone(),
            drop_on_error: self.drop_on_error,
        };
        ParseTransform::new("parse_regex", RegexParser { regexes }, &options, metrics)
    }

    fn outputs(&self) -> Vec<String> {
        vec![crate::transforms::parse::ERRORS_OUTPUT.to_string()]
    }
}

struct Capture {
    index: usize,
    path: OwnedValuePath,
    conversion: Option<Conversion>,
}

/// The regex parser.
pub struct RegexParser {
    regexes: Vec<(Regex, Vec<Capture>)>,
}

impl Parser for RegexParser {
    fn parse(&mut self, input: &Bytes) -> Result<Value, String> {
        for (re, captures) in &self.regexes {
            let Some(caps) = re.captures(input) else { continue };
            let mut out = Value::Object(Default::default());
            for c in captures {
                if let Some(m) = caps.get(c.index) {
                    let text = input.slice(m.start()..m.end());
                    let v = match c.conversion {
                        Some(conv) => conv.apply(text),
                        None => Value::Bytes(text),
                    };
                    out.insert(&c.path, v);
                }
            }
            return Ok(out);
        }
        Err("no pattern matched".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::transforms::test_util::{json, metrics, run};

    #[test]
    fn torchserve_access_line() {
        let c: ParseRegexConfig = toml_edit::de::from_str(
            r#"
pattern = '^(?P<ts>\S+ \S+) .*"(?P<method>\S+) /predictions/(?P<model>[^ /]+)\S* HTTP/[\d.]+" (?P<status>\d+) (?P<latency_ms>\d+)'
types = { status = "int", latency_ms = "int" }
"#,
        )
        .unwrap();
        let mut t = c.build(&metrics()).unwrap();
        let line = r#"2018-10-15 13:56:18,976 [INFO ] BackendWorker-9000 ACCESS_LOG - /127.0.0.1:64003 "POST /predictions/resnet-18 HTTP/1.1" 200 118"#;
        let (out, _) = run(&mut t, 1, vec![Event::from_message(line)]);
        let s = json(&out[0]);
        assert!(s.contains(r#""model":"resnet-18""#), "{s}");
        assert!(s.contains(r#""status":200"#), "{s}");
        assert!(s.contains(r#""latency_ms":118"#), "{s}");
        assert!(!s.contains("error"), "{s}");
    }

    #[test]
    fn config_errors_are_clear() {
        let c: ParseRegexConfig = toml_edit::de::from_str("pattern = '(unclosed'").unwrap();
        let e = c.build(&metrics()).err().unwrap();
        assert!(e.message.starts_with("invalid regular expression"), "{}", e.message);
        let c: ParseRegexConfig = toml_edit::de::from_str("pattern = 'a+'").unwrap();
        assert!(c.build(&metrics()).err().unwrap().message.contains("no named captures"));
    }
}
