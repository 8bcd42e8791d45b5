//! Templates such as `/var/log/weir/%Y-%m-%d/{{ service.name }}.log` or
//! `logs-model-%Y.%m.%d`: `{{ field }}` is replaced by the event's field, `%` sequences are
//! strftime of the event's `@timestamp` (or the current time when it has none), in UTC.
//!
//! Checked when the pipeline is loaded: an unterminated `{{`, a bad field path or an invalid
//! strftime sequence is a config error, never a panic at run time.

use std::fmt::Write as _;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Utc};
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use crate::event::{Event, parse_path};

#[derive(Debug, Clone)]
enum Part {
    /// Literal text, strftime-expanded when `has_time` is set on the template.
    Text(String),
    Field(OwnedValuePath, String),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
    has_time: bool,
    has_fields: bool,
    source: String,
}

/// Why an event could not render a template.
#[derive(Debug, PartialEq, Eq)]
pub struct MissingField(pub String);

impl Template {
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("unterminated `{{{{` in template `{source}`"))?;
            let name = after[..close].trim();
            if name.is_empty() {
                return Err(format!("empty `{{{{ }}}}` in template `{source}`"));
            }
            parts.push(Part::Field(parse_path(name)?, name.to_string()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        let mut has_time = false;
        for p in &parts {
            if let Part::Text(t) = p
                && t.contains('%')
            {
                if StrftimeItems::new(t).any(|i| matches!(i, Item::Error)) {
                    return Err(format!(
                        "invalid strftime sequence in template `{source}` (write %% for a literal %)"
                    ));
                }
                has_time = true;
            }
        }
        let has_fields = parts.iter().any(|p| matches!(p, Part::Field(..)));
        Ok(Self { parts, has_time, has_fields, source: source.to_string() })
    }

    /// True when the template renders the same for every event.
    pub fn is_static(&self) -> bool {
        !self.has_time && !self.has_fields
    }

    /// The field paths the template reads.
    pub fn field_paths(&self) -> Vec<OwnedValuePath> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Field(path, _) => Some(path.clone()),
                Part::Text(_) => None,
            })
            .collect()
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders for `event`; the time is the event's `@timestamp` or `now`.
    pub fn render(&self, event: &Event, now: DateTime<Utc>) -> Result<String, MissingField> {
        let mut out = String::with_capacity(self.source.len() + 16);
        self.render_into(event, now, &mut out)?;
        Ok(out)
    }

    /// [`Template::render`] appending to `out` (a buffer reused from one event to the next);
    /// on an error, `out` holds what was rendered before the missing field.
    pub fn render_into(
        &self,
        event: &Event,
        now: DateTime<Utc>,
        out: &mut String,
    ) -> Result<(), MissingField> {
        let time = event.timestamp().unwrap_or(now);
        for p in &self.parts {
            match p {
                Part::Text(t) if self.has_time && t.contains('%') => {
                    // Validated at parse time, so formatting cannot fail.
                    let _ = write!(out, "{}", time.format(t));
                }
                Part::Text(t) => out.push_str(t),
                Part::Field(path, name) => match event.get(path) {
                    Some(Value::Bytes(b)) => out.push_str(&crate::utf8::lossy(b)),
                    Some(Value::Null) | None => return Err(MissingField(name.clone())),
                    Some(v) => out.push_str(&v.to_string_lossy()),
                },
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn fields_and_dates() {
        let t = Template::parse("logs-{{ service.name }}-%Y.%m.%d").unwrap();
        let mut e = Event::from_message("x");
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
        assert_eq!(t.render(&e, now), Err(MissingField("service.name".into())));
        e.insert(&parse_path("service.name").unwrap(), Value::from("triton"));
        assert_eq!(t.render(&e, now).unwrap(), "logs-triton-2026.11.27");
        e.insert_key(
            "@timestamp",
            Value::Timestamp(Utc.with_ymd_and_hms(2025, 1, 2, 0, 0, 0).unwrap()),
        );
        assert_eq!(t.render(&e, now).unwrap(), "logs-triton-2025.01.02");
        assert!(Template::parse("plain").unwrap().is_static());
    }

    #[test]
    fn bad_templates_are_errors() {
        assert!(Template::parse("a {{ b").is_err());
        assert!(Template::parse("%Q").is_err());
        assert!(Template::parse("{{}}").is_err());
    }
}
