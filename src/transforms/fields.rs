//! `set`, `rename` and `remove`: the everyday field edits, without writing a VRL program.
//!
//! ```toml
//! [transforms.enrich]
//! type = "set"
//! inputs = ["parsed"]
//! fields = { "service.name" = "torchserve", "deployment.environment" = "${ENV:-dev}", "labels.model" = "{{ model }}" }
//! ```
//! A string value containing `{{ field }}` is rendered from the event; other values are set
//! as written (numbers, booleans, lists, tables).

use std::collections::BTreeMap;

use serde::Deserialize;
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use super::{Transform, TransformOutput};
use crate::component::TransformComponent;
use crate::error::ConfigIssue;
use crate::event::{Event, parse_path};
use crate::metrics::ComponentMetrics;
use crate::template::Template;

fn path(field: &str, key: &str) -> Result<OwnedValuePath, ConfigIssue> {
    parse_path(field).map_err(|e| ConfigIssue::field(key, e))
}

/// `[transforms.<id>] type = "set"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    /// Field path -> value.
    pub fields: BTreeMap<String, Value>,
    /// Replace fields that already exist. Default true.
    #[serde(default = "default_true")]
    pub overwrite: bool,
}

fn default_true() -> bool {
    true
}

enum SetValue {
    Fixed(Value),
    Template(Template),
}

pub struct Set {
    fields: Vec<(OwnedValuePath, SetValue)>,
    overwrite: bool,
}

impl TransformComponent for SetConfig {
    type Built = Set;

    fn concurrent(&self) -> bool {
        true
    }

    fn build(&self, _metrics: &ComponentMetrics) -> Result<Set, ConfigIssue> {
        if self.fields.is_empty() {
            return Err(ConfigIssue::field("fields", "give at least one field to set"));
        }
        let mut fields = Vec::new();
        for (name, value) in &self.fields {
            let text = match value {
                Value::Bytes(_) | Value::String(_) => value.to_str_lossy(),
                _ => None,
            };
            let v = match text {
                Some(t) if t.contains("{{") => SetValue::Template(
                    Template::parse(&t).map_err(|e| ConfigIssue::field("fields", e))?,
                ),
                _ => SetValue::Fixed(value.clone()),
            };
            fields.push((path(name, "fields")?, v));
        }
        Ok(Set { fields, overwrite: self.overwrite })
    }
}

impl Transform for Set {
    fn transform(&mut self, events: Vec<Event>, out: &mut TransformOutput) {
        let now = chrono::Utc::now();
        for mut event in events {
            for (path, value) in &self.fields {
                if !self.overwrite && event.get(path).is_some() {
                    continue;
                }
                let v = match value {
                    SetValue::Fixed(v) => v.clone(),
                    // A missing field renders as nothing set: the field is left out.
                    SetValue::Template(t) => match t.render(&event, now) {
                        Ok(s) => Value::from(s),
                        Err(_) => continue,
                    },
                };
                event.grow(crate::event::estimate_size(&v));
                event.insert(path, v);
            }
            out.push(event);
        }
    }
}

/// `[transforms.<id>] type = "rename"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameConfig {
    /// Old path -> new path.
    pub fields: BTreeMap<String, String>,
}

pub struct Rename {
    fields: Vec<(OwnedValuePath, OwnedValuePath)>,
}

impl TransformComponent for RenameConfig {
    type Built = Rename;

    fn concurrent(&self) -> bool {
        true
    }

    fn build(&self, _metrics: &ComponentMetrics) -> Result<Rename, ConfigIssue> {
        if self.fields.is_empty() {
            return Err(ConfigIssue::field("fields", "give at least one field to rename"));
        }
        let fields = self
            .fields
            .iter()
            .map(|(from, to)| Ok((path(from, "fields")?, path(to, "fields")?)))
            .collect::<Result<_, ConfigIssue>>()?;
        Ok(Rename { fields })
    }
}

impl Transform for Rename {
    fn transform(&mut self, events: Vec<Event>, out: &mut TransformOutput) {
        for mut event in events {
            for (from, to) in &self.fields {
                if let Some(v) = event.remove(from) {
                    event.insert(to, v);
                }
            }
            out.push(event);
        }
    }
}

/// `[transforms.<id>] type = "remove"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveConfig {
    /// Paths of the fields to remove (`error.message`, `"@timestamp"`).
    pub fields: Vec<String>,
}

pub struct Remove {
    fields: Vec<OwnedValuePath>,
}

impl TransformComponent for RemoveConfig {
    type Built = Remove;

    fn concurrent(&self) -> bool {
        true
    }

    fn build(&self, _metrics: &ComponentMetrics) -> Result<Remove, ConfigIssue> {
        if self.fields.is_empty() {
            return Err(ConfigIssue::field("fields", "give at least one field to remove"));
        }
        Ok(Remove {
            fields: self.fields.iter().map(|f| path(f, "fields")).collect::<Result<_, _>>()?,
        })
    }
}

impl Transform for Remove {
    fn transform(&mut self, events: Vec<Event>, out: &mut TransformOutput) {
        for mut event in events {
            for p in &self.fields {
                event.remove(p);
            }
            out.push(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::test_util::{json, run};

    #[test]
    fn set_rename_remove() {
        let c: SetConfig = toml_edit::de::from_str(
            r#"fields = { "service.name" = "torchserve", "labels.model" = "{{ model }}", replicas = 2 }"#,
        )
        .unwrap();
        let mut set = c.build(&crate::transforms::test_util::metrics()).unwrap();
        let mut e = Event::from_message("m");
        e.insert_key("model", Value::from("resnet"));
        let (out, _) = run(&mut set, 0, vec![e]);
        assert_eq!(
            json(&out[0]),
            r#"{"labels":{"model":"resnet"},"message":"m","model":"resnet","replicas":2,"service":{"name":"torchserve"}}"#
        );

        let c: RenameConfig =
            toml_edit::de::from_str(r#"fields = { model = "ml.model.name" }"#).unwrap();
        let (out, _) = run(&mut c.build(&crate::transforms::test_util::metrics()).unwrap(), 0, out);
        let c: RemoveConfig =
            toml_edit::de::from_str(r#"fields = ["labels", "replicas"]"#).unwrap();
        let (out, _) = run(&mut c.build(&crate::transforms::test_util::metrics()).unwrap(), 0, out);
        assert_eq!(
            json(&out[0]),
            r#"{"message":"m","ml":{"model":{"name":"resnet"}},"service":{"name":"torchserve"}}"#
        );
    }
}
