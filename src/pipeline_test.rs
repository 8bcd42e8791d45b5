//! `weir test`: runs the `[[tests]]` of pipeline files ([`crate::config::unit_test`]).
//!
//! Sources and sinks are not started. For each test, the transforms that lie between its
//! `insert_at` and what it reads (`extract_from`, `no_outputs_from`) are built as `weir run`
//! builds them, fresh for the test, and run in graph order, each once, on every event that
//! reaches it. Then each condition must hold for at least one event of its output (as in
//! Vector), an output with `event_count` must have that many events, and each
//! `no_outputs_from` output must be empty.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::component::{Transform, TransformOutput};
use crate::config::unit_test::{InputEvent, TestDef, TestOutput};
use crate::config::{Config, ConfigError, graph::parse_input, unit_test};
use crate::event::Event;
use crate::metrics::{ComponentLabels, ComponentMetrics};
use crate::transforms::vrl_program::{VrlProgram, VrlRunner};

use crate::say;

/// `weir test FILE...` (the embedded default pipeline when there are none): prints each
/// test's verdict, then what failed; returns the exit code (0 all passed, 1 a test failed,
/// 78 the files or their tests are invalid).
pub fn command(paths: &[PathBuf]) -> i32 {
    let config = match crate::app::load(paths) {
        Ok(c) => c,
        Err(errors) => return config_errors(&errors),
    };
    let errors = unit_test::check(&config);
    if !errors.is_empty() {
        return config_errors(&errors);
    }
    if config.tests.is_empty() {
        crate::say_err!("no tests: add [[tests]] to the pipeline (see README, Testing a pipeline)");
        return 0;
    }
    say!("running {} test{}", config.tests.len(), plural(config.tests.len()));
    let mut failures = Vec::new();
    for test in &config.tests {
        let verdict = run(&config, test);
        say!("test {} ... {}", test.name, if verdict.is_ok() { "passed" } else { "failed" });
        if let Err(report) = verdict {
            failures.push((test, report));
        }
    }
    for (test, report) in &failures {
        say!("\n--- {} ({}) ---\n{}", test.name, test.location, report.trim_end());
    }
    let (total, failed) = (config.tests.len(), failures.len());
    say!("\n{total} test{}: {} passed, {failed} failed", plural(total), total - failed);
    if failed == 0 { 0 } else { 1 }
}

fn config_errors(errors: &[ConfigError]) -> i32 {
    for e in errors {
        crate::say_err!("error: {e}");
    }
    crate::say_err!("{} error{} found", errors.len(), plural(errors.len()));
    78
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Runs one test; `Err` is the report of what failed.
pub fn run(config: &Config, test: &TestDef) -> Result<(), String> {
    let Ran { outputs, trace } = execute(config, test)?;
    let mut report = String::new();
    for expected in &test.outputs {
        check_output(expected, &outputs, &trace, &mut report);
    }
    for target in &test.no_outputs_from {
        if let Some(events) = outputs.get(&target.value).filter(|e| !e.is_empty()) {
            let _ = writeln!(
                report,
                "no_outputs_from \"{}\" ({}): expected no output, got {}:",
                target.value,
                target.location,
                count(events.len())
            );
            write_events(&mut report, events);
        }
    }
    if report.is_empty() { Ok(()) } else { Err(report) }
}

fn count(n: usize) -> String {
    format!("{n} event{}", plural(n))
}

/// Every condition holds for some event of each output it reads.
fn check_output(
    expected: &TestOutput,
    outputs: &BTreeMap<String, Vec<Event>>,
    trace: &[String],
    report: &mut String,
) {
    for target in &expected.extract_from {
        let events = outputs.get(&target.value).map_or(&[][..], Vec::as_slice);
        if events.is_empty() {
            let ran = if trace.is_empty() {
                "no transform between the inputs and it ran".to_string()
            } else {
                trace.join(", ")
            };
            let _ = writeln!(
                report,
                "extract_from \"{}\" ({}): no output\n  what ran: {ran}",
                target.value, target.location
            );
            continue;
        }
        if let Some(n) = expected.event_count.as_ref().filter(|n| n.value != events.len()) {
            let _ = writeln!(
                report,
                "extract_from \"{}\" ({}): event_count = {} ({}), got {}:",
                target.value,
                target.location,
                n.value,
                n.location,
                count(events.len()),
            );
            write_events(report, events);
        }
        for (i, condition) in expected.conditions.iter().enumerate() {
            let Some(why) = failed_condition(&condition.value, events) else { continue };
            let _ = writeln!(
                report,
                "extract_from \"{}\" ({}): condition {} of {} failed ({}):\n{}\n  \
                 for every event: {why}\n  what came out ({}):",
                target.value,
                target.location,
                i + 1,
                expected.conditions.len(),
                condition.location,
                indent(condition.value.trim()),
                count(events.len()),
            );
            write_events(report, events);
        }
    }
}

/// `None` when the condition holds for some event, else why it failed for each.
fn failed_condition(source: &str, events: &[Event]) -> Option<String> {
    let mut runner = match VrlProgram::compile(source, true) {
        Ok(p) => VrlRunner::new(p),
        Err(e) => return Some(e),
    };
    let mut why = BTreeSet::new();
    for event in events {
        match runner.check(&mut event.clone()) {
            Ok(true) => return None,
            Ok(false) => why.insert("false".to_string()),
            Err(e) => why.insert(e.to_string()),
        };
    }
    Some(why.into_iter().collect::<Vec<_>>().join("; "))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

fn write_events(report: &mut String, events: &[Event]) {
    for event in events {
        let json = serde_json::to_string_pretty(&event.view())
            .unwrap_or_else(|e| format!("(not JSON: {e})"));
        let _ = writeln!(report, "{}", indent(&json));
    }
}

/// What a test's transforms did.
struct Ran {
    /// Every output of the transforms that ran (`id`, `id.name`).
    outputs: BTreeMap<String, Vec<Event>>,
    /// `id (n in, m out)` for each, in the order they ran.
    trace: Vec<String>,
}

/// Inserts the test's events and runs the transforms between them and what the test reads.
fn execute(config: &Config, test: &TestDef) -> Result<Ran, String> {
    let mut pending: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    for input in &test.inputs {
        let event = input_event(&input.event)?;
        pending.entry(input.insert_at.value.clone()).or_default().push(event);
    }
    let targets = test
        .outputs
        .iter()
        .flat_map(|o| &o.extract_from)
        .chain(&test.no_outputs_from)
        .map(|t| parse_input(&t.value).component);
    let order = between(config, pending.keys().cloned(), targets);
    let mut outputs: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    let mut trace = Vec::new();
    for id in order {
        let def = &config.transforms[&id];
        let mut batch = pending.remove(&id).unwrap_or_default();
        for input in &def.inputs {
            if let Some(events) = outputs.get(input) {
                batch.extend(events.iter().cloned());
            }
        }
        let labels = ComponentLabels::new(&id, "transform", def.inner.type_name());
        let mut transform: Box<dyn Transform> = def
            .inner
            .build(&ComponentMetrics::new(labels))
            .map_err(|e| format!("transforms.{id} cannot be built: {}", e.message))?;
        let named = def.inner.outputs();
        let mut out = TransformOutput::new(named.len());
        let received = batch.len();
        transform.transform(batch, &mut out);
        let mut sent = vec![format!("{} out", out.primary.len())];
        outputs.insert(id.clone(), out.primary);
        for (name, events) in named.iter().zip(out.named) {
            if !events.is_empty() {
                sent.push(format!("{} to {id}.{name}", events.len()));
            }
            outputs.insert(format!("{id}.{name}"), events);
        }
        trace.push(format!("{id} ({received} in, {})", sent.join(", ")));
    }
    Ok(Ran { outputs, trace })
}

/// The event an input inserts.
fn input_event(input: &InputEvent) -> Result<Event, String> {
    Ok(match input {
        InputEvent::Raw(line) => Event::line(line.clone().into(), chrono::Utc::now()),
        InputEvent::Log(fields) => {
            let mut event = Event::from_value(vrl::value::Value::Object(Default::default()));
            for (path, value) in fields {
                let path = crate::event::parse_path(path)?;
                event.insert(&path, value.clone());
            }
            event.recompute_size();
            event
        }
        InputEvent::Vrl(source) => {
            let program = VrlProgram::compile(&source.value, false)?;
            let mut event = Event::from_value(vrl::value::Value::Object(Default::default()));
            VrlRunner::new(program)
                .run(&mut event)
                .map_err(|e| format!("the input program ({}) failed: {e}", source.location))?;
            event.recompute_size();
            event
        }
    })
}

/// The transforms downstream of `starts` and upstream of `targets`, in graph order (the
/// graph has no cycles: the loader checked it).
fn between(
    config: &Config,
    starts: impl Iterator<Item = String>,
    targets: impl Iterator<Item = String>,
) -> Vec<String> {
    let upstream_of = |id: &str| -> Vec<String> {
        config
            .transforms
            .get(id)
            .map_or(Vec::new(), |d| d.inputs.iter().map(|i| parse_input(i).component).collect())
    };
    let downstream = unit_test::downstream(config, starts);
    let mut upstream: BTreeSet<String> = BTreeSet::new();
    let mut stack: Vec<String> = targets.collect();
    while let Some(id) = stack.pop() {
        if config.transforms.contains_key(&id) && upstream.insert(id.clone()) {
            stack.extend(upstream_of(&id));
        }
    }
    let needed: BTreeSet<&String> = downstream.intersection(&upstream).collect();
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    while order.len() < needed.len() {
        let ready: Vec<String> = needed
            .iter()
            .filter(|id| !done.contains(**id))
            .filter(|id| upstream_of(id).iter().all(|u| !needed.contains(u) || done.contains(u)))
            .map(|id| (*id).clone())
            .collect();
        if ready.is_empty() {
            break;
        }
        for id in ready {
            done.insert(id.clone());
            order.push(id);
        }
    }
    order
}
