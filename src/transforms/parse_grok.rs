//! `parse_grok`: Logstash's grok, with its standard pattern library (the `grok` crate).
//!
//! `%{PATTERN:name}` captures into `name`; `%{PATTERN:name:int}` (or `:float`, `:bool`)
//! converts; names may be paths (`http.method`, or Logstash's `[http][method]`). Patterns are
//! tried in order and the first match wins. Captured values are slices of the original field.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use grok::{Grok, Pattern};
use serde::Deserialize;
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use super::parse::{Conversion, ParseOptions, ParseTransform, Parser, parse_field};
use crate::component::TransformComponent;
use crate::error::ConfigIssue;
use crate::metrics::ComponentMetrics;

/// `[transforms.<id>] type = "parse_grok"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseGrokConfig {
    /// One grok pattern; or `patterns`, tried in order.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Several patterns, tried in order; the first that matches wins.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Extra named patterns usable as `%{NAME}`: `{ MODEL = "[a-z0-9_-]+" }`.
    #[serde(default)]
    pub pattern_definitions: BTreeMap<String, String>,
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

impl TransformComponent for ParseGrokConfig {
    type Built = ParseTransform<GrokParser>;

    fn concurrent(&self) -> bool {
        true
    }

    fn build(&self, metrics: &ComponentMetrics) -> Result<ParseTransform<GrokParser>, ConfigIssue> {
        let mut grok = Grok::with_default_patterns();
        for (name, def) in &self.pattern_definitions {
            grok.add_pattern(name.clone(), def.clone());
        }
        let mut sources: Vec<&str> = self.pattern.iter().map(String::as_str).collect();
        sources.extend(self.patterns.iter().map(String::as_str));
        if sources.is_empty() {
            return Err(ConfigIssue::general(
                "set `pattern` (or `patterns`) to a grok pattern such as \"%{COMMONAPACHELOG}\"",
            ));
        }
        let key = if self.pattern.is_some() { "pattern" } else { "patterns" };
        let mut compiled = Vec::new();
        for src in sources {
            let pattern = grok.compile(src, true).map_err(|e| {
                ConfigIssue::field(key, format!("invalid grok pattern `{src}`: {e}"))
            })?;
            let mut fields = HashMap::new();
            for name in pattern.capture_names() {
                let conversion = match pattern.get_extract(name) {
                    None => None,
                    Some(x) => Some(Conversion::parse_name(x).ok_or_else(|| {
                        ConfigIssue::field(key, format!("unknown conversion `:{x}` for `{name}`: use int, float, bool or string"))
                    })?),
                };
                fields.insert(
                    name.to_string(),
                    (parse_field(&logstash_path(name), key)?, conversion),
                );
            }
            if fields.is_empty() {
                return Err(ConfigIssue::field(
                    key,
                    format!(
                        "the pattern `{src}` captures nothing: name a capture, as in %{{IP:client}}"
                    ),
                ));
            }
            compiled.push((pattern, fields));
        }
        let options = ParseOptions {
            field: self.field.clone(),
            target: self.target.clone(),
            drop_on_error: self.drop_on_error,
        };
        ParseTransform::new("parse_grok", GrokParser { patterns: compiled }, &options, metrics)
    }

    fn outputs(&self) -> Vec<String> {
        vec![crate::transforms::parse::ERRORS_OUTPUT.to_string()]
    }
}

/// `[http][method]` -> `http.method`; other names unchanged.
fn logstash_path(name: &str) -> String {
    if name.starts_with('[') && name.ends_with(']') {
        name.trim_start_matches('[').trim_end_matches(']').split("][").collect::<Vec<_>>().join(".")
    } else {
        name.to_string()
    }
}

type CaptureMap = HashMap<String, (OwnedValuePath, Option<Conversion>)>;

/// The grok parser.
pub struct GrokParser {
    patterns: Vec<(Pattern, CaptureMap)>,
}

impl Parser for GrokParser {
    fn parse(&mut self, input: &Bytes) -> Result<Value, String> {
        let text = std::str::from_utf8(input).map_err(|e| format!("not valid UTF-8: {e}"))?;
        let base = text.as_ptr() as usize;
        for (pattern, fields) in &self.patterns {
            let Some(matches) = pattern.match_against(text) else { continue };
            let mut out = Value::Object(Default::default());
            for (name, value) in matches.iter() {
                let Some((path, conversion)) = fields.get(name) else { continue };
                // `value` borrows from `text`, which is `input`: slice instead of copying.
                let start = value.as_ptr() as usize - base;
                let bytes = input.slice(start..start + value.len());
                let v = match conversion {
                    Some(c) => c.apply(bytes),
                    None => Value::Bytes(bytes),
                };
                out.insert(path, v);
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
    fn standard_library_and_conversions() {
        let c: ParseGrokConfig = toml_edit::de::from_str(
            r#"pattern = '%{IPORHOST:client.ip} - %{DATA:user} \[%{HTTPDATE:ts}\] "%{WORD:[http][method]} %{NOTSPACE:url} HTTP/%{NUMBER:v}" %{INT:status:int} %{NUMBER:bytes:float}'"#,
        )
        .unwrap();
        let mut t = c.build(&metrics()).unwrap();
        let line = r#"10.0.0.1 - - [15/Oct/2018:13:56:18 +0000] "POST /predictions/resnet HTTP/1.1" 200 118"#;
        let (out, _) = run(&mut t, 1, vec![Event::from_message(line)]);
        let s = json(&out[0]);
        assert!(s.contains(r#""client":{"ip":"10.0.0.1"}"#), "{s}");
        assert!(s.contains(r#""http":{"method":"POST"}"#), "{s}");
        assert!(s.contains(r#""status":200"#), "{s}");
        assert!(s.contains(r#""bytes":118.0"#), "{s}");
    }

    #[test]
    fn unknown_pattern_is_a_config_error() {
        let c: ParseGrokConfig = toml_edit::de::from_str("pattern = '%{NOPE:x}'").unwrap();
        let e = c.build(&metrics()).err().unwrap();
        assert!(e.message.contains("NOPE"), "{}", e.message);
    }
}
