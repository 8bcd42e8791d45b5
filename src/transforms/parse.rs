//! What every parser shares: which field to read, where the result goes, what a failure does.

use bytes::Bytes;
use serde::Deserialize;
use vrl::path::OwnedValuePath;
use vrl::value::{ObjectMap, Value};

use crate::error::ConfigIssue;
use crate::event::{Event, parse_path};
use crate::internal_events::ParseFailed;
use crate::metrics::ComponentMetrics;
use crate::transforms::{Transform, TransformOutput};

/// Name of the output that takes events a parser could not parse when `drop_on_error = true`.
pub const ERRORS_OUTPUT: &str = "errors";

/// Options common to the parsers. Each parser's config repeats these three keys (serde's
/// `flatten` cannot be combined with `deny_unknown_fields`, which reports unknown keys) and
/// its `build` gathers them here.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    /// The field to parse. Default `message` ([`default_field`]).
    pub field: String,
    /// Where the parsed fields go: unset merges them into the event's root; a path nests them
    /// under it.
    pub target: Option<String>,
    /// Send events that fail to parse to the `<id>.errors` output instead of passing them on
    /// with an `error.message` field.
    pub drop_on_error: bool,
}

/// The default `field` of the parsers that read a line: `message`.
pub(crate) fn default_field() -> String {
    "message".into()
}

/// A parser: bytes in, fields out.
pub trait Parser: Send + 'static {
    /// Parses `input` (a `Bytes` so that parsers can slice it without copying).
    fn parse(&mut self, input: &Bytes) -> Result<Value, String>;

    /// Estimated heap size of `value`, just returned by [`Parser::parse`]. Parsers that
    /// count as they build override this to spare a walk over the tree.
    fn estimated_size(&self, value: &Value) -> usize {
        crate::event::estimate_size(value)
    }

    /// Parses `input` straight into the event's root object, for parsers that can do so
    /// without building a map of their own first. Must leave `root` untouched on failure.
    /// Returns the estimated size added, or `None` when the parser cannot do this.
    fn parse_into_root(
        &mut self,
        _input: &Bytes,
        _root: &mut ObjectMap,
    ) -> Option<Result<usize, String>> {
        None
    }
}

/// A parser wrapped in the shared contract.
pub struct ParseTransform<P> {
    parser: P,
    name: &'static str,
    field: OwnedValuePath,
    target: Option<OwnedValuePath>,
    drop_on_error: bool,
    failed: ParseFailed,
}

pub(crate) fn parse_field(field: &str, key: &str) -> Result<OwnedValuePath, ConfigIssue> {
    parse_path(field).map_err(|e| ConfigIssue::field(key, e))
}

impl<P: Parser> ParseTransform<P> {
    pub fn new(
        name: &'static str,
        parser: P,
        options: &ParseOptions,
        metrics: &ComponentMetrics,
    ) -> Result<Self, ConfigIssue> {
        Ok(Self {
            parser,
            name,
            field: parse_field(&options.field, "field")?,
            target: options.target.as_deref().map(|t| parse_field(t, "target")).transpose()?,
            drop_on_error: options.drop_on_error,
            failed: ParseFailed::new(metrics),
        })
    }

    fn parse_one(&mut self, event: &mut Event) -> Result<(), String> {
        let input = match event.get(&self.field) {
            Some(Value::Bytes(b)) => b.clone(),
            Some(Value::String(s)) => s.as_bytes().clone(),
            Some(other) => {
                return Err(format!(
                    "field `{}` is {}, not a string",
                    self.field,
                    other.kind_str()
                ));
            }
            None => return Err(format!("field `{}` is missing", self.field)),
        };
        if self.target.is_none()
            && let Some(result) = self.parser.parse_into_root(&input, event.own_map_mut())
        {
            event.grow(result?);
            event.merge_shadowed_shared();
            return Ok(());
        }
        let parsed = self.parser.parse(&input)?;
        event.grow(self.parser.estimated_size(&parsed));
        match &self.target {
            Some(target) => {
                event.insert(target, parsed);
            }
            None => match parsed {
                Value::Object(map) => {
                    merge_into_root(event, map);
                    event.merge_shadowed_shared();
                }
                other => {
                    return Err(format!(
                        "parsed value is {}, not an object; set `target` to keep it",
                        other.kind_str()
                    ));
                }
            },
        }
        Ok(())
    }
}

/// Inserts every parsed field at the root, replacing fields of the same name; a parsed
/// object merges with the event's object of the same name (a capture into `log.level`
/// keeps `log.file.path`). The smaller map is moved into the larger one (a parsed JSON log
/// usually has more fields than the event it came from). Measured against
/// `BTreeMap::append`, which rebuilds the whole tree, and against collecting and sorting:
/// both cost more for maps of this size.
pub(crate) fn merge_into_root(event: &mut Event, mut parsed: ObjectMap) {
    // Only adds and replaces: shared fields stay shared (merged by `merge_shadowed_shared`).
    let root = event.own_map_mut();
    if parsed.len() > root.len() {
        for (k, v) in std::mem::take(root) {
            match (parsed.get_mut(k.as_str()), v) {
                (None, v) => {
                    parsed.insert(k, v);
                }
                (Some(Value::Object(new)), Value::Object(old)) => keep_missing(new, old),
                (Some(_), _) => {}
            }
        }
        *root = parsed;
    } else {
        for (k, v) in parsed {
            match (root.get_mut(k.as_str()), v) {
                (Some(Value::Object(old)), Value::Object(new)) => {
                    let mut new = new;
                    keep_missing(&mut new, std::mem::take(old));
                    *old = new;
                }
                (_, v) => {
                    root.insert(k, v);
                }
            }
        }
    }
}

/// Moves the entries of `old` that `new` lacks into `new`, objects merged at every depth.
fn keep_missing(new: &mut ObjectMap, old: ObjectMap) {
    for (k, v) in old {
        match (new.get_mut(k.as_str()), v) {
            (None, v) => {
                new.insert(k, v);
            }
            (Some(Value::Object(n)), Value::Object(o)) => keep_missing(n, o),
            (Some(_), _) => {}
        }
    }
}

/// Records a failure on the event in ECS's `error.message`.
pub(crate) fn mark_error(event: &mut Event, component: &str, message: &str) {
    let path = vrl::owned_value_path!("error", "message");
    event.insert(&path, Value::from(format!("{component}: {message}")));
}

impl<P: Parser> Transform for ParseTransform<P> {
    fn transform(&mut self, events: Vec<Event>, out: &mut TransformOutput) {
        for mut event in events {
            match self.parse_one(&mut event) {
                Ok(()) => out.push(event),
                Err(reason) => {
                    self.failed.emit(&reason);
                    mark_error(&mut event, self.name, &reason);
                    if self.drop_on_error {
                        out.push_named(0, event);
                    } else {
                        out.push(event);
                    }
                }
            }
        }
    }
}

/// Converts captured text to the type a user asked for (`int`, `float`, `bool`, `string`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conversion {
    #[serde(alias = "integer")]
    Int,
    Float,
    #[serde(alias = "boolean")]
    Bool,
    String,
}

impl Conversion {
    pub fn parse_name(name: &str) -> Option<Self> {
        match name {
            "int" | "integer" | "long" => Some(Self::Int),
            "float" | "double" => Some(Self::Float),
            "bool" | "boolean" => Some(Self::Bool),
            "string" => Some(Self::String),
            _ => None,
        }
    }

    /// Converts; on failure the text is kept as a string (the capture is not lost).
    pub fn apply(self, text: Bytes) -> Value {
        let s = std::str::from_utf8(&text).map(str::trim);
        match (self, s) {
            (Self::Int, Ok(s)) => {
                s.parse::<i64>().map(Value::Integer).unwrap_or(Value::Bytes(text))
            }
            (Self::Float, Ok(s)) => s
                .parse::<f64>()
                .ok()
                .and_then(|f| ordered_float::NotNan::new(f).ok())
                .map(Value::Float)
                .unwrap_or(Value::Bytes(text)),
            (Self::Bool, Ok(s)) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "on" => Value::Boolean(true),
                "false" | "no" | "0" | "off" => Value::Boolean(false),
                _ => Value::Bytes(text),
            },
            _ => Value::Bytes(text),
        }
    }
}
