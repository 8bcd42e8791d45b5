//! `[[tests]]`: unit tests of a pipeline's transforms, in Vector's shape, run by `weir test`.
//!
//! ```toml
//! [[tests]]
//! name = "an access line is parsed"
//!
//! [[tests.inputs]]
//! insert_at = "server_lines"            # a transform
//! type = "raw"                          # `value` becomes `message` (and `@timestamp` is now)
//! value = '2026-11-27T10:00:00,120 [INFO ] W-9000 ACCESS_LOG - ...'
//!
//! [[tests.outputs]]
//! extract_from = "event_time"           # a transform, or one of its outputs (`id.name`)
//! [[tests.outputs.conditions]]
//! type = "vrl"
//! source = '.http.response.status_code == 200'
//! ```
//!
//! `type = "log"` inserts `log_fields` (keys are field paths), `type = "vrl"` the event its
//! `source` program builds from an empty one (there is no `type = "metric"`: weir's events are
//! logs). `no_outputs_from` lists outputs that must stay empty; `event_count = N` in a
//! `[[tests.outputs]]` (weir's own, Vector has none) says how many events each of its outputs
//! must have. Run time ignores tests; their tables are read here, with positions, and checked
//! against the graph by [`check`] (`weir validate`, `weir test`), so a broken test never
//! stops a pipeline from running.

use std::collections::BTreeSet;
use std::ops::Range;

use toml_edit::{Item, Key, TableLike};
use vrl::value::{KeyString, ObjectMap, Value};

use super::graph::parse_input;
use super::{Config, ConfigError, Location, did_you_mean};
use crate::transforms::vrl_program::VrlProgram;

/// A value of the file and where it is written.
#[derive(Debug, Clone)]
pub struct Located<T> {
    pub value: T,
    pub location: Location,
}

/// One `[[tests]]` table.
#[derive(Debug, Clone)]
pub struct TestDef {
    pub name: String,
    pub location: Location,
    pub inputs: Vec<TestInput>,
    pub outputs: Vec<TestOutput>,
    /// Outputs (`id` or `id.name`) that must produce no event.
    pub no_outputs_from: Vec<Located<String>>,
}

/// One `[[tests.inputs]]`: an event inserted at a transform's input.
#[derive(Debug, Clone)]
pub struct TestInput {
    pub insert_at: Located<String>,
    pub event: InputEvent,
}

#[derive(Debug, Clone)]
pub enum InputEvent {
    /// `type = "raw"`: a line, as a source reads it (`message`, and `@timestamp` now).
    Raw(String),
    /// `type = "log"`: these fields, by path.
    Log(Vec<(String, Value)>),
    /// `type = "vrl"`: what this program makes of an empty event.
    Vrl(Located<String>),
}

/// One `[[tests.outputs]]`: what must come out of an output.
#[derive(Debug, Clone)]
pub struct TestOutput {
    pub extract_from: Vec<Located<String>>,
    pub conditions: Vec<Located<String>>,
    /// `event_count` (weir's own): how many events each output must have.
    pub event_count: Option<Located<usize>>,
}

type Locate<'a> = &'a dyn Fn(Option<Range<usize>>) -> Option<Location>;

/// Reads the `tests` array of one file into `tests`; what is malformed goes to `errors`.
pub(super) fn gather(
    item: &Item,
    at: Location,
    locate: Locate<'_>,
    tests: &mut Vec<TestDef>,
    errors: &mut Vec<ConfigError>,
) {
    let mut r = Reader { locate, errors, fallback: at.clone() };
    let tables = r.tables(item, "tests", &at);
    for (i, (table, location)) in tables.into_iter().enumerate() {
        let fallback = format!("tests[{i}]");
        if let Some(test) = r.test(table, location, &fallback) {
            tests.push(test);
        }
    }
}

struct Reader<'a, 'e> {
    locate: Locate<'a>,
    errors: &'e mut Vec<ConfigError>,
    fallback: Location,
}

impl Reader<'_, '_> {
    fn error(&mut self, location: Option<Location>, test: &str, message: String) {
        self.errors.push(ConfigError {
            location: Some(location.unwrap_or_else(|| self.fallback.clone())),
            component: Some(format!("test `{test}`")),
            message,
        });
    }

    fn at(&self, table: &dyn TableLike, key: &str) -> Option<Location> {
        (self.locate)(table.key(key).and_then(Key::span))
    }

    fn value_at(&self, item: &Item) -> Option<Location> {
        (self.locate)(item.span())
    }

    /// An array of tables (`[[x]]` or `x = [{...}]`), each with where it starts.
    fn tables<'i>(
        &mut self,
        item: &'i Item,
        what: &str,
        at: &Location,
    ) -> Vec<(&'i dyn TableLike, Location)> {
        let mut out: Vec<(&dyn TableLike, Location)> = Vec::new();
        match item {
            Item::ArrayOfTables(a) => {
                for t in a.iter() {
                    let here = (self.locate)(t.span()).unwrap_or_else(|| at.clone());
                    out.push((t, here));
                }
            }
            Item::Value(toml_edit::Value::Array(a))
                if a.iter().all(|v| v.as_inline_table().is_some()) =>
            {
                for v in a.iter() {
                    if let Some(t) = v.as_inline_table() {
                        let here = (self.locate)(v.span()).unwrap_or_else(|| at.clone());
                        out.push((t, here));
                    }
                }
            }
            _ => self.errors.push(ConfigError {
                location: self.value_at(item).or_else(|| Some(at.clone())),
                component: None,
                message: format!("`{what}` must be an array of tables, written [[{what}]]"),
            }),
        }
        out
    }

    /// Reports keys other than `known`.
    fn known_keys(&mut self, table: &dyn TableLike, known: &[&str], test: &str, what: &str) {
        let unknown: Vec<String> =
            table.iter().map(|(k, _)| k.to_string()).filter(|k| !known.contains(&&**k)).collect();
        for key in unknown {
            let hint = did_you_mean(&key, known.iter().copied())
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            let at = self.at(table, &key);
            self.error(
                at,
                test,
                format!("unknown key `{key}` in {what}; {hint}known keys: {}", known.join(", ")),
            );
        }
    }

    /// A string value, with its position; `None` (and an error) when it is not a string.
    fn string(
        &mut self,
        table: &dyn TableLike,
        key: &str,
        test: &str,
        what: &str,
    ) -> Option<Located<String>> {
        let item = table.get(key)?;
        let location = self.value_at(item).or_else(|| self.at(table, key));
        match item.as_str() {
            Some(s) => Some(Located {
                value: s.to_string(),
                location: location.unwrap_or_else(|| self.fallback.clone()),
            }),
            None => {
                self.error(location, test, format!("`{key}` of {what} must be a string"));
                None
            }
        }
    }

    /// A string or a list of strings.
    fn strings(
        &mut self,
        table: &dyn TableLike,
        key: &str,
        test: &str,
        what: &str,
    ) -> Vec<Located<String>> {
        let Some(item) = table.get(key) else { return Vec::new() };
        if item.is_str() {
            return self.string(table, key, test, what).into_iter().collect();
        }
        let Some(arr) = item.as_array() else {
            let at = self.value_at(item);
            self.error(
                at,
                test,
                format!("`{key}` of {what} must be a string or a list of strings"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for v in arr.iter() {
            let location = (self.locate)(v.span()).unwrap_or_else(|| self.fallback.clone());
            match v.as_str() {
                Some(s) => out.push(Located { value: s.to_string(), location }),
                None => self.error(
                    Some(location),
                    test,
                    format!("`{key}` of {what} must be a list of strings"),
                ),
            }
        }
        out
    }

    fn test(&mut self, table: &dyn TableLike, location: Location, index: &str) -> Option<TestDef> {
        let name = match self.string(table, "name", index, "a test") {
            Some(n) => n.value,
            None => {
                if table.get("name").is_none() {
                    self.error(Some(location.clone()), index, "missing `name`".into());
                }
                index.to_string()
            }
        };
        self.fallback = location.clone();
        self.known_keys(table, &["name", "inputs", "outputs", "no_outputs_from"], &name, "a test");
        let mut inputs = Vec::new();
        match table.get("inputs") {
            None => self.error(
                Some(location.clone()),
                &name,
                "missing [[tests.inputs]]: a test inserts at least one event".into(),
            ),
            Some(item) => {
                for (t, at) in self.tables(item, "tests.inputs", &location) {
                    if let Some(input) = self.input(t, at, &name) {
                        inputs.push(input);
                    }
                }
            }
        }
        let mut outputs = Vec::new();
        if let Some(item) = table.get("outputs") {
            for (t, at) in self.tables(item, "tests.outputs", &location) {
                outputs.push(self.output(t, at, &name));
            }
        }
        let no_outputs_from = self.strings(table, "no_outputs_from", &name, "a test");
        if table.get("outputs").is_none() && table.get("no_outputs_from").is_none() {
            self.error(
                Some(location.clone()),
                &name,
                "a test checks something: add [[tests.outputs]] or no_outputs_from".into(),
            );
        }
        Some(TestDef { name, location, inputs, outputs, no_outputs_from })
    }

    fn input(&mut self, t: &dyn TableLike, at: Location, test: &str) -> Option<TestInput> {
        const WHAT: &str = "[[tests.inputs]]";
        self.fallback = at.clone();
        self.known_keys(t, &["insert_at", "type", "value", "log_fields", "source"], test, WHAT);
        let insert_at = self.string(t, "insert_at", test, WHAT);
        if t.get("insert_at").is_none() {
            self.error(Some(at.clone()), test, "missing `insert_at` (a transform's id)".into());
        }
        let kind = self.string(t, "type", test, WHAT);
        let kind_name = kind.as_ref().map_or("raw", |k| k.value.as_str());
        let event = match kind_name {
            "raw" => match self.string(t, "value", test, WHAT) {
                Some(v) => Some(InputEvent::Raw(v.value)),
                None => {
                    if t.get("value").is_none() {
                        self.error(
                            Some(at.clone()),
                            test,
                            "missing `value` (the line) for type = \"raw\"".into(),
                        );
                    }
                    None
                }
            },
            "log" => match t.get("log_fields") {
                Some(item) => match item.as_table_like() {
                    Some(fields) => Some(InputEvent::Log(
                        fields.iter().map(|(k, v)| (k.to_string(), item_value(v))).collect(),
                    )),
                    None => {
                        let here = self.value_at(item);
                        self.error(
                            here,
                            test,
                            "`log_fields` must be a table of field paths and values".into(),
                        );
                        None
                    }
                },
                None => {
                    self.error(
                        Some(at.clone()),
                        test,
                        "missing `log_fields` for type = \"log\"".into(),
                    );
                    None
                }
            },
            "vrl" => match self.string(t, "source", test, WHAT) {
                Some(source) => Some(InputEvent::Vrl(source)),
                None => {
                    if t.get("source").is_none() {
                        self.error(
                            Some(at.clone()),
                            test,
                            "missing `source` (a VRL program) for type = \"vrl\"".into(),
                        );
                    }
                    None
                }
            },
            other => {
                let where_ = kind.as_ref().map(|k| k.location.clone());
                self.error(
                    where_,
                    test,
                    match other {
                        // Vector's metric inputs: weir's pipelines carry logs only.
                        "metric" => "`type = \"metric\"` is not supported: events in weir are \
                                     logs (log_to_metric turns them into Prometheus series on \
                                     /metrics, not into events); known types: raw, log, vrl"
                            .to_string(),
                        _ => format!("unknown input type `{other}`; known types: raw, log, vrl"),
                    },
                );
                None
            }
        };
        // With a malformed event, the insert_at is still checked (the error about the event
        // is recorded, so the empty line never runs).
        Some(TestInput {
            insert_at: insert_at?,
            event: event.unwrap_or(InputEvent::Raw(String::new())),
        })
    }

    fn output(&mut self, t: &dyn TableLike, at: Location, test: &str) -> TestOutput {
        const WHAT: &str = "[[tests.outputs]]";
        self.fallback = at.clone();
        self.known_keys(t, &["extract_from", "conditions", "event_count"], test, WHAT);
        let extract_from = self.strings(t, "extract_from", test, WHAT);
        if t.get("extract_from").is_none() {
            self.error(Some(at.clone()), test, "missing `extract_from` (a transform's id)".into());
        }
        let mut conditions = Vec::new();
        if let Some(item) = t.get("conditions") {
            for (c, here) in self.tables(item, "tests.outputs.conditions", &at) {
                const C: &str = "[[tests.outputs.conditions]]";
                self.fallback = here.clone();
                self.known_keys(c, &["type", "source"], test, C);
                if let Some(kind) = self.string(c, "type", test, C)
                    && kind.value != "vrl"
                {
                    self.error(
                        Some(kind.location),
                        test,
                        format!("unknown condition type `{}`; the type is \"vrl\"", kind.value),
                    );
                }
                match self.string(c, "source", test, C) {
                    Some(source) => conditions.push(source),
                    None if c.get("source").is_none() => self.error(
                        Some(here),
                        test,
                        "missing `source`: a VRL condition, such as source = '.status == 200'"
                            .into(),
                    ),
                    None => {}
                }
            }
        }
        let event_count = t.get("event_count").and_then(|item| {
            let location = self.value_at(item).unwrap_or_else(|| at.clone());
            match item.as_integer() {
                Some(n) if n >= 1 => Some(Located { value: n as usize, location }),
                _ => {
                    let hint = "`event_count` must be a whole number of at least 1 (for none, \
                                list the output in the test's `no_outputs_from`)";
                    self.error(Some(location), test, hint.into());
                    None
                }
            }
        });
        TestOutput { extract_from, conditions, event_count }
    }
}

/// A TOML value as an event value: tables are objects, a date-time with an offset is a
/// timestamp, other date-times are strings.
fn item_value(item: &Item) -> Value {
    match item {
        Item::Value(v) => toml_value(v),
        Item::Table(t) => {
            Value::Object(t.iter().map(|(k, v)| (KeyString::from(k), item_value(v))).collect())
        }
        Item::ArrayOfTables(a) => Value::Array(
            a.iter()
                .map(|t| {
                    Value::Object(
                        t.iter().map(|(k, v)| (KeyString::from(k), item_value(v))).collect(),
                    )
                })
                .collect(),
        ),
        Item::None => Value::Null,
    }
}

fn toml_value(v: &toml_edit::Value) -> Value {
    use toml_edit::Value as T;
    match v {
        T::String(s) => Value::from(s.value().as_str()),
        T::Integer(i) => Value::Integer(*i.value()),
        T::Float(f) => Value::from_f64_or_zero(*f.value()),
        T::Boolean(b) => Value::Boolean(*b.value()),
        T::Datetime(d) => {
            let text = d.value().to_string();
            match chrono::DateTime::parse_from_rfc3339(&text) {
                Ok(t) => Value::Timestamp(t.with_timezone(&chrono::Utc)),
                Err(_) => Value::from(text.as_str()),
            }
        }
        T::Array(a) => Value::Array(a.iter().map(toml_value).collect()),
        T::InlineTable(t) => Value::Object(
            t.iter().map(|(k, v)| (KeyString::from(k), toml_value(v))).collect::<ObjectMap>(),
        ),
    }
}

/// Checks the tests against the pipeline: `insert_at` names a transform, `extract_from` and
/// `no_outputs_from` a transform's output, programs compile. Every problem, with its place.
pub fn check(config: &Config) -> Vec<ConfigError> {
    let mut errors = config.test_errors.clone();
    for test in &config.tests {
        let mut error = |location: &Location, message: String| {
            errors.push(ConfigError {
                location: Some(location.clone()),
                component: Some(format!("test `{}`", test.name)),
                message,
            })
        };
        for input in &test.inputs {
            if let Err(m) = insert_target(config, &input.insert_at.value) {
                error(&input.insert_at.location, m);
            }
            if let InputEvent::Vrl(source) = &input.event
                && let Err(m) = VrlProgram::compile(&source.value, false)
            {
                error(&source.location, m);
            }
            if let InputEvent::Log(fields) = &input.event {
                for (path, _) in fields {
                    if let Err(m) = crate::event::parse_path(path) {
                        error(&input.insert_at.location, format!("log_fields: {m}"));
                    }
                }
            }
        }
        let reached = downstream(config, test.inputs.iter().map(|i| i.insert_at.value.clone()));
        let extracted = test.outputs.iter().flat_map(|o| &o.extract_from);
        for target in extracted.chain(&test.no_outputs_from) {
            if let Err(m) = extract_target(config, &target.value) {
                error(&target.location, m);
            } else if !reached.contains(&parse_input(&target.value).component) {
                let message = format!(
                    "\"{}\" is not downstream of this test's insert_at, so nothing can reach it",
                    target.value
                );
                error(&target.location, message);
            }
        }
        for condition in test.outputs.iter().flat_map(|o| &o.conditions) {
            if let Err(m) = VrlProgram::compile(&condition.value, true) {
                error(&condition.location, m);
            }
        }
    }
    // In file order.
    errors.sort_by_key(|e| e.location.as_ref().map(|l| (l.file.clone(), l.line, l.column)));
    errors
}

/// The transforms `starts` and those reading from them, directly or not.
pub fn downstream(config: &Config, starts: impl Iterator<Item = String>) -> BTreeSet<String> {
    let mut reached: BTreeSet<String> =
        starts.filter(|s| config.transforms.contains_key(s)).collect();
    loop {
        let more: Vec<String> = config
            .transforms
            .iter()
            .filter(|(id, def)| {
                !reached.contains(*id)
                    && def.inputs.iter().any(|i| reached.contains(&parse_input(i).component))
            })
            .map(|(id, _)| id.clone())
            .collect();
        if more.is_empty() {
            return reached;
        }
        reached.extend(more);
    }
}

/// Is `id` a transform events can be inserted at?
fn insert_target(config: &Config, id: &str) -> Result<(), String> {
    if config.transforms.contains_key(id) {
        return Ok(());
    }
    Err(if config.sources.contains_key(id) {
        format!(
            "insert_at = \"{id}\" names a source; sources do not run in tests: insert at a \
             transform, with the fields the source would set (type = \"log\")"
        )
    } else if config.sinks.contains_key(id) {
        format!(
            "insert_at = \"{id}\" names a sink; sinks do not run in tests: insert at a transform"
        )
    } else {
        unknown_transform(config, "insert_at", id)
    })
}

/// Is `output` (`id` or `id.name`) an output of a transform?
fn extract_target(config: &Config, output: &str) -> Result<(), String> {
    let target = parse_input(output);
    let Some(def) = config.transforms.get(&target.component) else {
        return Err(if config.sinks.contains_key(&target.component) {
            format!("\"{output}\" is a sink; sinks do not run in tests: name one of its inputs")
        } else if config.sources.contains_key(&target.component) {
            format!("\"{output}\" is a source; sources do not run in tests: name a transform")
        } else {
            unknown_transform(config, "extract_from", output)
        });
    };
    match &target.port {
        None => Ok(()),
        Some(port) => {
            let outputs = def.inner.outputs();
            if outputs.contains(port) {
                Ok(())
            } else {
                Err(format!(
                    "transforms.{} has no output `{port}`; its outputs: {}",
                    target.component,
                    std::iter::once(target.component.clone())
                        .chain(outputs.iter().map(|o| format!("{}.{o}", target.component)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
    }
}

fn unknown_transform(config: &Config, key: &str, id: &str) -> String {
    let hint = did_you_mean(id, config.transforms.keys().map(String::as_str))
        .map(|s| format!("did you mean \"{s}\"? "))
        .unwrap_or_default();
    let known: Vec<&str> = config.transforms.keys().map(String::as_str).collect();
    format!(
        "{key} = \"{id}\" names no transform; {hint}transforms: {}",
        if known.is_empty() { "none".to_string() } else { known.join(", ") }
    )
}
