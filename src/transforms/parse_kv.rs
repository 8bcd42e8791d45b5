//! `parse_kv` and `parse_logfmt`: `key=value` pairs into fields.
//!
//! The parsing itself is VRL's (`parse_key_value` and `parse_logfmt` from its standard
//! library), so quoting and escaping behave exactly as they do in Vector.

use bytes::Bytes;
use serde::Deserialize;
use vrl::value::{KeyString, ObjectMap, Value};

use super::parse::{ParseOptions, ParseTransform, Parser};
use super::vrl_program::{VrlProgram, VrlRunner};
use crate::component::TransformComponent;
use crate::error::ConfigIssue;
use crate::event::Event;
use crate::metrics::ComponentMetrics;

/// `[transforms.<id>] type = "parse_kv"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseKvConfig {
    /// Between a key and its value. Default `=`.
    #[serde(default = "default_kv")]
    pub key_value_delimiter: String,
    /// Between pairs. Default a space.
    #[serde(default = "default_fd")]
    pub field_delimiter: String,
    /// A key without a value becomes `true`. Default true.
    #[serde(default = "default_true")]
    pub accept_standalone_key: bool,
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

/// `[transforms.<id>] type = "parse_logfmt"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseLogfmtConfig {
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

fn default_kv() -> String {
    "=".into()
}
fn default_fd() -> String {
    " ".into()
}
fn default_true() -> bool {
    true
}
/// A VRL raw string literal (`s'...'`): no escapes are processed but `\'`.
fn vrl_string(s: &str) -> String {
    format!("s'{}'", s.replace('\'', "\\'"))
}

impl TransformComponent for ParseKvConfig {
    type Built = ParseTransform<VrlParser>;

    fn concurrent(&self) -> bool {
        true
    }

    fn build(&self, metrics: &ComponentMetrics) -> Result<ParseTransform<VrlParser>, ConfigIssue> {
        if self.key_value_delimiter.is_empty() {
            return Err(ConfigIssue::field("key_value_delimiter", "must not be empty"));
        }
        if self.field_delimiter.is_empty() {
            return Err(ConfigIssue::field("field_delimiter", "must not be empty"));
        }
        let program = format!(
            "parse_key_value!(.m, key_value_delimiter: {}, field_delimiter: {}, accept_standalone_key: {})",
            vrl_string(&self.key_value_delimiter),
            vrl_string(&self.field_delimiter),
            self.accept_standalone_key
        );
        let options = ParseOptions {
            field: self.field.clone(),
            target: self.target.clone(),
            drop_on_error: self.drop_on_error,
        };
        ParseTransform::new("parse_kv", VrlParser::new(&program)?, &options, metrics)
    }

    fn outputs(&self) -> Vec<String> {
        vec![crate::transforms::parse::ERRORS_OUTPUT.to_string()]
    }
}

impl TransformComponent for ParseLogfmtConfig {
    type Built = ParseTransform<VrlParser>;

    fn concurrent(&self) -> bool {
        true
    }

    fn build(&self, metrics: &ComponentMetrics) -> Result<ParseTransform<VrlParser>, ConfigIssue> {
        let options = ParseOptions {
            field: self.field.clone(),
            target: self.target.clone(),
            drop_on_error: self.drop_on_error,
        };
        ParseTransform::new("parse_logfmt", VrlParser::new("parse_logfmt!(.m)")?, &options, metrics)
    }

    fn outputs(&self) -> Vec<String> {
        vec![crate::transforms::parse::ERRORS_OUTPUT.to_string()]
    }
}

/// Runs a VRL parsing function on the field's text, held in a one-field scratch event.
pub struct VrlParser {
    runner: VrlRunner,
}

impl VrlParser {
    fn new(program: &str) -> Result<Self, ConfigIssue> {
        let program = VrlProgram::compile(program, false).map_err(ConfigIssue::general)?;
        Ok(Self { runner: VrlRunner::new(program) })
    }
}

impl Parser for VrlParser {
    fn parse(&mut self, input: &Bytes) -> Result<Value, String> {
        let mut map = ObjectMap::new();
        map.insert(KeyString::from("m"), Value::Bytes(input.clone()));
        let mut scratch = Event::from_value(Value::Object(map));
        self.runner.run(&mut scratch).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::test_util::{json, metrics, run};

    #[test]
    fn key_values_and_logfmt() {
        let c: ParseKvConfig = toml_edit::de::from_str("").unwrap();
        let mut t = c.build(&metrics()).unwrap();
        let (out, _) =
            run(&mut t, 1, vec![Event::from_message(r#"model=resnet latency="12 ms" cached"#)]);
        let s = json(&out[0]);
        assert!(
            s.contains(r#""model":"resnet""#)
                && s.contains(r#""latency":"12 ms""#)
                && s.contains(r#""cached":true"#),
            "{s}"
        );

        let c: ParseLogfmtConfig = toml_edit::de::from_str("target = \"kv\"").unwrap();
        let mut t = c.build(&metrics()).unwrap();
        let (out, _) = run(
            &mut t,
            1,
            vec![Event::from_message(r#"level=info msg="loaded model" model_version=3"#)],
        );
        let s = json(&out[0]);
        assert!(
            s.contains(r#""kv":{"level":"info","model_version":"3","msg":"loaded model"}"#),
            "{s}"
        );
    }
}
