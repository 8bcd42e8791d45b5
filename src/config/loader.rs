//! Reading pipeline files into a [`Config`], keeping every error with its position.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml_edit::{Document, InlineTable, Item, Key, TableLike, Value as TomlValue};

use super::{
    BufferConfig, ComponentDef, ComponentKind, Config, ConfigError, DEFAULT_DATA_DIR,
    DEFAULT_SHUTDOWN_TIMEOUT, GlobalOptions, Location, did_you_mean, graph, vars,
};
use crate::metrics::{ComponentLabels, ComponentMetrics};
use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;
use crate::transforms::TransformConfig;

/// Maps byte offsets of a file's expanded text (`${VAR}` replaced) to 1-based lines and
/// columns of the file as written (columns count characters).
struct LineIndex<'a> {
    file: Arc<str>,
    text: &'a str,
    starts: Vec<usize>,
    expansion: Option<&'a vars::Expansion>,
}

impl<'a> LineIndex<'a> {
    fn new(file: Arc<str>, text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1));
        Self { file, text, starts, expansion: None }
    }

    /// Offsets given to `locate` are of `expansion`'s text, which was expanded from `text`.
    fn expanded(mut self, expansion: &'a vars::Expansion) -> Self {
        self.expansion = Some(expansion);
        self
    }

    fn locate(&self, offset: usize) -> Location {
        self.locate_original(self.expansion.map_or(offset, |x| x.original_offset(offset)))
    }

    fn locate_original(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = self.text.get(start..offset).map_or(1, |s| s.chars().count() + 1);
        Location { file: Arc::clone(&self.file), line, column }
    }

    fn span(&self, span: Option<Range<usize>>) -> Option<Location> {
        span.map(|s| self.locate(s.start))
    }
}

/// Everything gathered from the files before the graph is checked.
#[derive(Default)]
struct Gathered {
    globals: GlobalOptions,
    global_locations: BTreeMap<&'static str, Location>,
    sources: BTreeMap<String, ComponentDef<SourceConfig>>,
    transforms: BTreeMap<String, ComponentDef<TransformConfig>>,
    sinks: BTreeMap<String, ComponentDef<SinkConfig>>,
    /// Where each id was defined, to catch one id used twice.
    defined: BTreeMap<String, (ComponentKind, Location)>,
    /// Components whose own table had errors: the graph check does not second-guess them.
    broken: BTreeSet<String>,
    /// Inputs of broken transforms and sinks, still checked against the graph.
    broken_inputs: Vec<graph::Consumer>,
    /// A file was not valid TOML: what it defines is unknown.
    unparsed: bool,
    tests: Vec<super::unit_test::TestDef>,
    test_errors: Vec<ConfigError>,
    errors: Vec<ConfigError>,
}

/// Loads and validates the pipeline files, reporting every error at once.
pub fn load_from_paths(paths: &[PathBuf]) -> Result<Config, Vec<ConfigError>> {
    let mut texts = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::read_to_string(path) {
            Ok(text) => texts.push((path.display().to_string(), text)),
            Err(e) => errors.push(ConfigError {
                location: None,
                component: None,
                message: format!("cannot read {}: {e}", path.display()),
            }),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    load_texts(texts.iter().map(|(n, t)| (n.as_str(), t.as_str())))
}

/// Loads one pipeline given as text (`name` is used in error positions).
pub fn load_from_str(name: &str, text: &str) -> Result<Config, Vec<ConfigError>> {
    load_texts([(name, text)])
}

fn load_texts<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Config, Vec<ConfigError>> {
    let mut g = Gathered::default();
    for (name, text) in files {
        gather_file(&mut g, name, text);
    }
    if g.sources.is_empty()
        && !g.unparsed
        && !g
            .broken
            .iter()
            .any(|id| g.defined.get(id).is_some_and(|d| d.0 == ComponentKind::Source))
    {
        g.errors.push(ConfigError {
            location: None,
            component: None,
            message: "no sources are defined: add a [sources.<id>] table".into(),
        });
    }
    if g.sinks.is_empty()
        && !g.unparsed
        && !g.broken.iter().any(|id| g.defined.get(id).is_some_and(|d| d.0 == ComponentKind::Sink))
    {
        g.errors.push(ConfigError {
            location: None,
            component: None,
            message: "no sinks are defined: add a [sinks.<id>] table".into(),
        });
    }
    let mut config = Config {
        data_dir: g.globals.data_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        api: g.globals.api.clone(),
        dead_letter: g.globals.dead_letter.clone().unwrap_or_default(),
        shutdown_timeout: g
            .globals
            .shutdown_timeout_secs
            .map_or(DEFAULT_SHUTDOWN_TIMEOUT, Duration::from_secs),
        sources: std::mem::take(&mut g.sources),
        transforms: std::mem::take(&mut g.transforms),
        sinks: std::mem::take(&mut g.sinks),
        warnings: Vec::new(),
        tests: std::mem::take(&mut g.tests),
        test_errors: std::mem::take(&mut g.test_errors),
    };
    let mut errors = std::mem::take(&mut g.errors);
    errors.extend(graph::check(&mut config, &g.broken, &g.broken_inputs));
    errors.extend(check_components(&config));
    errors.extend(check_dead_letter(&config, g.global_locations.get("dead_letter.sink")));
    if errors.is_empty() {
        return Ok(config);
    }
    // In file order; errors without a position last.
    errors.sort_by(|a, b| {
        let key = |e: &ConfigError| {
            e.location.as_ref().map(|l| (0, l.file.to_string(), l.line, l.column)).unwrap_or((
                1,
                String::new(),
                0,
                0,
            ))
        };
        key(a).cmp(&key(b))
    });
    Err(errors)
}

fn gather_file(g: &mut Gathered, name: &str, original: &str) {
    let file: Arc<str> = Arc::from(name);
    let expansion = vars::expand(original, |n| std::env::var(n).ok());
    let index = LineIndex::new(Arc::clone(&file), original).expanded(&expansion);
    g.errors.extend(expansion.errors.iter().map(|m| ConfigError {
        location: Some(index.locate_original(m.offset)),
        component: None,
        message: m.message.clone(),
    }));
    let doc = match Document::parse(expansion.text.as_str()) {
        Ok(doc) => doc,
        Err(e) => {
            g.errors.push(ConfigError {
                location: index.span(e.span()),
                component: None,
                message: format!("invalid TOML: {}", e.message()),
            });
            g.unparsed = true;
            return;
        }
    };
    let root = doc.as_table();
    let mut globals = InlineTable::new();
    for (key, item) in root.iter() {
        let key_span = root.key(key).and_then(Key::span);
        match key {
            "sources" => gather_kind(g, &index, ComponentKind::Source, item, key_span),
            "transforms" => gather_kind(g, &index, ComponentKind::Transform, item, key_span),
            "sinks" => gather_kind(g, &index, ComponentKind::Sink, item, key_span),
            "tests" => {
                let at = index.span(key_span).unwrap_or_else(|| index.locate(0));
                let locate = |span| index.span(span);
                super::unit_test::gather(item, at, &locate, &mut g.tests, &mut g.test_errors);
            }
            "api" => match item_to_value(item.clone())
                .map(|v| super::ApiConfig::deserialize(v.into_deserializer()))
            {
                Some(Ok(api)) => {
                    if let Some(prev) = g.global_locations.get("api") {
                        g.errors.push(ConfigError {
                            location: index.span(key_span.clone()),
                            component: None,
                            message: format!("[api] is set again (first set at {prev})"),
                        });
                    } else if let Some(at) = index.span(key_span.clone()) {
                        g.global_locations.insert("api", at);
                        g.globals.api = Some(api);
                    }
                }
                Some(Err(e)) => g.errors.push(ConfigError {
                    location: index.span(e.span().or(key_span.clone())),
                    component: Some("api".into()),
                    message: friendly(e.message()),
                }),
                None => {}
            },
            "dead_letter" => match item_to_value(item.clone())
                .map(|v| crate::dead_letter::DeadLetterConfig::deserialize(v.into_deserializer()))
            {
                Some(Ok(dl)) => {
                    if let Some(prev) = g.global_locations.get("dead_letter") {
                        g.errors.push(ConfigError {
                            location: index.span(key_span.clone()),
                            component: None,
                            message: format!("[dead_letter] is set again (first set at {prev})"),
                        });
                    } else if let Some(at) = index.span(key_span.clone()) {
                        g.global_locations.insert("dead_letter", at.clone());
                        // Errors about the sink point at its key.
                        let sink_at = item
                            .as_table_like()
                            .and_then(|t| t.key("sink"))
                            .and_then(Key::span)
                            .and_then(|s| index.span(Some(s)))
                            .unwrap_or(at);
                        g.global_locations.insert("dead_letter.sink", sink_at);
                        g.globals.dead_letter = Some(dl);
                    }
                }
                Some(Err(e)) => g.errors.push(ConfigError {
                    location: index.span(e.span().or(key_span.clone())),
                    component: Some("dead_letter".into()),
                    message: friendly(e.message()),
                }),
                None => {}
            },
            _ => {
                if let Some(v) = item_to_value(item.clone()) {
                    globals.insert_formatted(
                        &root.key(key).cloned().unwrap_or_else(|| Key::new(key)),
                        v,
                    );
                }
            }
        }
    }
    match GlobalOptions::deserialize(TomlValue::InlineTable(globals).into_deserializer()) {
        Ok(opts) => merge_globals(g, &index, root, opts),
        Err(e) => g.errors.push(ConfigError {
            location: index.span(e.span()),
            component: None,
            message: top_level_message(e.message()),
        }),
    }
}

fn top_level_message(msg: &str) -> String {
    if msg.starts_with("unknown field") {
        format!(
            "{} at the top level (the top level holds data_dir, api, dead_letter, \
             shutdown_timeout_secs, the [sources], [transforms] and [sinks] tables and \
             [[tests]])",
            msg.replace("unknown field", "unknown key").split(", expected").next().unwrap_or(msg)
        )
    } else {
        msg.to_string()
    }
}

fn merge_globals(
    g: &mut Gathered,
    index: &LineIndex<'_>,
    root: &toml_edit::Table,
    opts: GlobalOptions,
) {
    let loc = |key: &str| {
        root.key(key).and_then(Key::span).map(|s| index.locate(s.start)).unwrap_or(Location {
            file: Arc::clone(&index.file),
            line: 1,
            column: 1,
        })
    };
    macro_rules! merge {
        ($field:ident, $name:literal) => {
            if let Some(v) = opts.$field {
                let here = loc($name);
                if let Some(prev) = g.global_locations.get($name) {
                    g.errors.push(ConfigError {
                        location: Some(here),
                        component: None,
                        message: format!("`{}` is set again (first set at {prev})", $name),
                    });
                } else {
                    g.global_locations.insert($name, here);
                    g.globals.$field = Some(v);
                }
            }
        };
    }
    merge!(data_dir, "data_dir");
    merge!(shutdown_timeout_secs, "shutdown_timeout_secs");
}

/// A TOML item as an inline value (tables become inline tables), keeping spans.
fn item_to_value(item: Item) -> Option<TomlValue> {
    match item {
        Item::Value(v) => Some(v),
        Item::Table(t) => {
            let mut inline = InlineTable::new();
            for (k, v) in t.iter() {
                if let Some(v) = item_to_value(v.clone()) {
                    let key = t.key(k).cloned().unwrap_or_else(|| Key::new(k));
                    inline.insert_formatted(&key, v);
                }
            }
            Some(TomlValue::InlineTable(inline))
        }
        Item::ArrayOfTables(a) => {
            let mut arr = toml_edit::Array::new();
            for t in a.into_iter() {
                if let Some(v) = item_to_value(Item::Table(t)) {
                    arr.push_formatted(v);
                }
            }
            Some(TomlValue::Array(arr))
        }
        Item::None => None,
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn gather_kind(
    g: &mut Gathered,
    index: &LineIndex<'_>,
    kind: ComponentKind,
    item: &Item,
    key_span: Option<Range<usize>>,
) {
    let Some(table) = item.as_table_like() else {
        g.errors.push(ConfigError {
            location: index.span(item.span().or(key_span)),
            component: None,
            message: format!(
                "`{}` must be a table of components, like [{}.my_id]",
                kind.table(),
                kind.table()
            ),
        });
        return;
    };
    for (id, component) in table.iter() {
        let id_span = table.key(id).and_then(Key::span);
        let location = index
            .span(id_span.clone().or_else(|| component.span()))
            .unwrap_or(Location { file: Arc::clone(&index.file), line: 1, column: 1 });
        let full = format!("{}.{id}", kind.table());
        let err = |message: String, at: Option<Location>| ConfigError {
            location: Some(at.unwrap_or_else(|| location.clone())),
            component: Some(full.clone()),
            message,
        };
        if !valid_id(id) {
            g.errors.push(err(
                format!(
                    "invalid component id `{id}`: ids are letters, digits, `_` and `-` (a `.` \
                     separates a component from one of its named outputs)"
                ),
                None,
            ));
            g.broken.insert(id.to_string());
            continue;
        }
        if let Some((prev_kind, prev)) = g.defined.get(id) {
            g.errors.push(err(
                format!("the id `{id}` is already used by {}.{id} at {prev}", prev_kind.table()),
                None,
            ));
            continue;
        }
        g.defined.insert(id.to_string(), (kind, location.clone()));
        match gather_component(index, kind, component, &location) {
            Ok(def) => match def {
                Gotten::Source(d) => {
                    g.sources.insert(id.to_string(), d);
                }
                Gotten::Transform(d) => {
                    g.transforms.insert(id.to_string(), d);
                }
                Gotten::Sink(d) => {
                    g.sinks.insert(id.to_string(), d);
                }
            },
            Err((errs, inputs)) => {
                g.broken.insert(id.to_string());
                g.errors.extend(errs.into_iter().map(|(m, at)| err(m, at)));
                if let Some((inputs, at)) = inputs {
                    g.broken_inputs.push(graph::Consumer {
                        kind,
                        id: id.to_string(),
                        inputs,
                        location: at,
                    });
                }
            }
        }
    }
}

enum Gotten {
    Source(ComponentDef<SourceConfig>),
    Transform(ComponentDef<TransformConfig>),
    Sink(ComponentDef<SinkConfig>),
}

type Problems = Vec<(String, Option<Location>)>;
/// A failed component's problems, and its inputs (with their position) when they parsed.
type Failed = (Problems, Option<(Vec<String>, Location)>);

fn gather_component(
    index: &LineIndex<'_>,
    kind: ComponentKind,
    component: &Item,
    location: &Location,
) -> Result<Gotten, Failed> {
    let Some(table) = component.as_table_like() else {
        return Err((
            vec![("a component must be a table".into(), index.span(component.span()))],
            None,
        ));
    };
    let mut problems = Problems::new();
    let mut field_locations = BTreeMap::new();
    record_locations(index, table, "", &mut field_locations);
    let type_name = read_type(index, table, &mut problems);
    let inputs = match kind {
        ComponentKind::Source => Vec::new(),
        _ => read_inputs(index, table, kind, &mut problems),
    };
    let buffer = match kind {
        ComponentKind::Sink => read_buffer(index, table, &mut problems),
        _ => BufferConfig::default(),
    };
    let inputs_location =
        index.span(table.key("inputs").and_then(Key::span)).unwrap_or_else(|| location.clone());
    let failed_inputs = (kind != ComponentKind::Source && table.get("inputs").is_some())
        .then(|| (inputs.clone(), inputs_location));
    let Some(type_name) = type_name else {
        return Err((problems, failed_inputs));
    };
    if let Err(problem) = known_type(index, table, kind, &type_name) {
        problems.push(problem);
        return Err((problems, failed_inputs));
    }
    let fingerprint = fingerprint(component);
    let parts = ComponentDef {
        inner: (),
        inputs,
        buffer,
        location: location.clone(),
        field_locations,
        fingerprint,
    };
    match deserialize(kind, &type_name, own_options(table, kind), parts) {
        Some(Ok(gotten)) if problems.is_empty() => Ok(gotten),
        Some(Ok(_)) | None => Err((problems, failed_inputs)),
        Some(Err(e)) => {
            problems.push((friendly(e.message()), index.span(e.span())));
            Err((problems, failed_inputs))
        }
    }
}

/// The component's `type`, as a string.
fn read_type(
    index: &LineIndex<'_>,
    table: &dyn TableLike,
    problems: &mut Problems,
) -> Option<String> {
    match table.get("type") {
        None => {
            problems.push(("missing `type`".into(), None));
            None
        }
        Some(item) => match item.as_str() {
            Some(t) => Some(t.to_string()),
            None => {
                problems.push(("`type` must be a string".into(), index.span(item.span())));
                None
            }
        },
    }
}

/// The `inputs` of a transform or sink: a list of strings.
fn read_inputs(
    index: &LineIndex<'_>,
    table: &dyn TableLike,
    kind: ComponentKind,
    problems: &mut Problems,
) -> Vec<String> {
    let mut inputs = Vec::new();
    let Some(item) = table.get("inputs") else {
        let message = format!("missing `inputs`: a {} needs at least one input", kind.name());
        problems.push((message, None));
        return inputs;
    };
    let Some(arr) = item.as_array() else {
        problems.push((
            "`inputs` must be a list of component ids, like inputs = [\"my_source\"]".into(),
            index.span(item.span()),
        ));
        return inputs;
    };
    for v in arr.iter() {
        match v.as_str() {
            Some(s) => inputs.push(s.to_string()),
            None => problems.push((
                "`inputs` must be a list of component ids (strings)".into(),
                index.span(v.span()),
            )),
        }
    }
    inputs
}

/// The `buffer` table of a sink.
fn read_buffer(
    index: &LineIndex<'_>,
    table: &dyn TableLike,
    problems: &mut Problems,
) -> BufferConfig {
    let Some(item) = table.get("buffer") else { return BufferConfig::default() };
    match item_to_value(item.clone()).map(|v| BufferConfig::deserialize(v.into_deserializer())) {
        Some(Ok(b)) => b,
        Some(Err(e)) => {
            let at = index.span(e.span().or(item.span()));
            problems.push((format!("buffer: {}", e.message()), at));
            BufferConfig::default()
        }
        None => BufferConfig::default(),
    }
}

/// The rest of the table: the type's own options.
fn own_options(table: &dyn TableLike, kind: ComponentKind) -> InlineTable {
    let mut rest = InlineTable::new();
    for (key, item) in table.iter() {
        let generic = key == "type"
            || (key == "inputs" && kind != ComponentKind::Source)
            || (key == "buffer" && kind == ComponentKind::Sink);
        if generic {
            continue;
        }
        if let Some(v) = item_to_value(item.clone()) {
            let k = table.key(key).cloned().unwrap_or_else(|| Key::new(key));
            rest.insert_formatted(&k, v);
        }
    }
    rest
}

/// Is `type_name` a type of this kind? If not, the problem, with a "did you mean".
fn known_type(
    index: &LineIndex<'_>,
    table: &dyn TableLike,
    kind: ComponentKind,
    type_name: &str,
) -> Result<(), (String, Option<Location>)> {
    let types: &[&str] = match kind {
        ComponentKind::Source => SourceConfig::TYPES,
        ComponentKind::Transform => TransformConfig::TYPES,
        ComponentKind::Sink => SinkConfig::TYPES,
    };
    if types.contains(&type_name) {
        return Ok(());
    }
    let hint = did_you_mean(type_name, types.iter().copied())
        .map(|s| format!("did you mean `{s}`? "))
        .unwrap_or_default();
    Err((
        format!(
            "unknown {} type `{type_name}`; {hint}known types: {}",
            kind.name(),
            types.join(", ")
        ),
        index.span(table.get("type").and_then(Item::span)),
    ))
}

/// Deserializes the type's own options into its closed config enum; `parts` holds the keys
/// every component of the kind has.
fn deserialize(
    kind: ComponentKind,
    type_name: &str,
    options: InlineTable,
    parts: ComponentDef<()>,
) -> Option<Result<Gotten, toml_edit::de::Error>> {
    let de = TomlValue::InlineTable(options).into_deserializer();
    Some(match kind {
        ComponentKind::Source => {
            SourceConfig::deserialize_typed(type_name, de)?.map(|c| Gotten::Source(parts.with(c)))
        }
        ComponentKind::Transform => TransformConfig::deserialize_typed(type_name, de)?
            .map(|c| Gotten::Transform(parts.with(c))),
        ComponentKind::Sink => {
            SinkConfig::deserialize_typed(type_name, de)?.map(|c| Gotten::Sink(parts.with(c)))
        }
    })
}

impl ComponentDef<()> {
    /// The same component with its typed config.
    fn with<T>(self, inner: T) -> ComponentDef<T> {
        let ComponentDef { inner: (), inputs, buffer, location, field_locations, fingerprint } =
            self;
        ComponentDef { inner, inputs, buffer, location, field_locations, fingerprint }
    }
}

/// The component's table as canonical JSON (keys sorted, no layout or comments), after
/// `${VAR}` expansion: a reload rebuilds a component when this changes.
fn fingerprint(component: &Item) -> String {
    item_to_value(component.clone())
        .and_then(|v| serde_json::Value::deserialize(v.into_deserializer()).ok())
        .map(|v| v.to_string())
        .unwrap_or_default()
}

/// Serde's messages, with the wording tuned for people writing TOML.
fn friendly(msg: &str) -> String {
    msg.replace("invalid type: sequence", "invalid type: list")
        .replace("invalid type: map", "invalid type: table")
        .replace("expected a sequence", "expected a list")
        .replace("expected a map", "expected a table")
}

fn record_locations(
    index: &LineIndex<'_>,
    table: &dyn TableLike,
    prefix: &str,
    out: &mut BTreeMap<String, Location>,
) {
    for (key, item) in table.iter() {
        let name = if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") };
        if let Some(loc) = index.span(table.key(key).and_then(Key::span).or_else(|| item.span())) {
            out.insert(name.clone(), loc);
        }
        if let Some(sub) = item.as_table_like() {
            record_locations(index, sub, &name, out);
        }
    }
}

/// `[dead_letter]` names a sink that exists; the default file writer's id is not taken.
fn check_dead_letter(config: &Config, at: Option<&Location>) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if let Some(def) = config.sinks.get(crate::dead_letter::FILE_WRITER_ID) {
        errors.push(ConfigError {
            location: Some(def.location.clone()),
            component: Some(format!("sinks.{}", crate::dead_letter::FILE_WRITER_ID)),
            message: format!(
                "the id `{}` is reserved for the dead-letter file; choose another",
                crate::dead_letter::FILE_WRITER_ID
            ),
        });
    }
    if let Some(sink) = &config.dead_letter.sink
        && !config.sinks.contains_key(sink)
    {
        let hint = did_you_mean(sink, config.sinks.keys().map(String::as_str))
            .map(|s| format!(" (did you mean \"{s}\"?)"))
            .unwrap_or_default();
        errors.push(ConfigError {
            location: at.cloned(),
            component: Some("dead_letter".into()),
            message: format!("dead_letter.sink \"{sink}\" names no sink{hint}"),
        });
    }
    errors
}

/// Each component's own checks (patterns, programs, templates), located by field.
fn check_components(config: &Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (id, def) in &config.sources {
        for issue in def.inner.check() {
            errors.push(ConfigError {
                location: Some(def.locate(issue.field.as_deref())),
                component: Some(format!("sources.{id}")),
                message: issue.message,
            });
        }
    }
    for (id, def) in &config.transforms {
        let labels = ComponentLabels::new(id, "transform", def.inner.type_name());
        for issue in def.inner.check(&ComponentMetrics::new(labels)) {
            errors.push(ConfigError {
                location: Some(def.locate(issue.field.as_deref())),
                component: Some(format!("transforms.{id}")),
                message: issue.message,
            });
        }
    }
    for (id, def) in &config.sinks {
        for issue in def.inner.check().into_iter().chain(def.buffer.check()) {
            errors.push(ConfigError {
                location: Some(def.locate(issue.field.as_deref())),
                component: Some(format!("sinks.{id}")),
                message: issue.message,
            });
        }
    }
    errors
}
