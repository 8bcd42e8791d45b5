//! The `kafka` sink against the real broker the source tests use (tansu), read back with
//! weir's `kafka` source (librdkafka's consumer): keys, headers, each compression codec, a
//! templated topic and the text codec; a broker stopped and started again mid-run; a full
//! local producer queue while the broker hangs (backpressure, not a drop); records the
//! broker cannot take going to the dead-letter file; SASL/SCRAM to a broker that requires it.
//! Every record is counted by its id.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::kafka::Broker;
use crate::support::{Weir, read_json_lines, read_lines, wait_for};

const WAIT: Duration = Duration::from_secs(90);

/// Appends JSON lines with ids `ids` to `path`: a model name (5 of them), a trace id, a level
/// (every third is `error`) and a message.
fn append_lines(path: &Path, ids: std::ops::Range<usize>) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    for i in ids {
        let level = if i % 3 == 0 { "error" } else { "info" };
        writeln!(
            f,
            r#"{{"id":{i},"model":"model-{}","trace":"t{i}","level":"{level}","message":"prediction {i}"}}"#,
            i % 5
        )
        .unwrap();
    }
}

/// weir reading `topics` in group `group` from the beginning, writing JSON lines to
/// `dir/out.log`.
fn consumer(dir: &Path, broker: &Broker, topics: &[&str], group: &str) -> Weir {
    consumer_with(dir, broker, topics, group, "")
}

/// Like `consumer`, with `extra` options for the source (TOML lines).
fn consumer_with(dir: &Path, broker: &Broker, topics: &[&str], group: &str, extra: &str) -> Weir {
    let topics: Vec<String> = topics.iter().map(|t| format!("\"{t}\"")).collect();
    Weir::start(
        dir,
        &format!(
            r#"
[sources.kafka]
type = "kafka"
bootstrap_servers = "{address}"
group_id = "{group}"
topics = [{topics}]
auto_offset_reset = "earliest"
session_timeout_ms = 6000
librdkafka_options = {{ "heartbeat.interval.ms" = "500", "topic.metadata.refresh.interval.ms" = "1000" }}
{extra}

[sinks.out]
type = "file"
inputs = ["kafka"]
path = "{{{{dir}}}}/out.log"
encoding.codec = "json"
"#,
            address = broker.address(),
            topics = topics.join(", ")
        ),
    )
}

fn consumed(dir: &Path) -> Vec<Value> {
    read_json_lines(&dir.join("out.log"))
}

/// The id of a consumed record whose value is a JSON object with an `id` (an input line, or
/// the event the sink encoded).
fn id_of(e: &Value) -> u64 {
    let v: Value = serde_json::from_str(e["message"].as_str().unwrap()).expect("a JSON value");
    v["id"].as_u64().expect("id")
}

/// Waits until `check` holds for the consumer's output, failing with both weirs' logs.
fn wait_output(
    dir: &Path,
    what: &str,
    weirs: &[&Weir],
    broker: &Broker,
    mut check: impl FnMut(&[Value]) -> bool,
) {
    if !wait_for(WAIT, || check(&consumed(dir))) {
        let logs: Vec<String> = weirs.iter().map(|w| w.stderr()).collect();
        panic!(
            "{what}: not there; {} records consumed\nweir:\n{}\nbroker:\n{}",
            consumed(dir).len(),
            logs.join("\n----\n"),
            broker.log()
        );
    }
}

/// Stops `weir` with SIGTERM and asserts a clean exit, showing its log otherwise.
pub(crate) fn stop_cleanly(weir: Weir) {
    let log = weir.dir.join("stderr");
    let status = weir.stop();
    assert!(status.success(), "{status:?}\n{}", std::fs::read_to_string(log).unwrap_or_default());
}

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

#[test]
fn records_carry_keys_headers_and_every_compression() {
    let broker = Broker::start();
    for codec in CODECS {
        broker.create_topic(&format!("c-{codec}"), 3);
    }
    broker.create_topic("t-info", 1);
    broker.create_topic("t-error", 1);

    let agent_dir = tempfile::tempdir().unwrap();
    append_lines(&agent_dir.path().join("in.log"), 0..200);
    let mut pipeline = r#"
[sources.lines]
type = "file"
include = ["{{dir}}/in.log"]

[transforms.fields]
type = "parse_json"
inputs = ["lines"]

# The message alone, to a topic named by each event's level.
[sinks.by_level]
type = "kafka"
inputs = ["fields"]
bootstrap_servers = "ADDRESS"
topic = "t-{{ level }}"
encoding.codec = "text"
"#
    .replace("ADDRESS", &broker.address());
    for codec in CODECS {
        pipeline.push_str(&format!(
            r#"
[sinks.{codec}]
type = "kafka"
inputs = ["fields"]
bootstrap_servers = "{address}"
topic = "c-{codec}"
key_field = "model"
headers = {{ "trace-id" = "trace", "model" = "model" }}
compression = "{codec}"
encoding.codec = "json"
"#,
            address = broker.address()
        ));
    }
    let agent = Weir::start(agent_dir.path(), &pipeline);

    let out = tempfile::tempdir().unwrap();
    let topics = ["c-none", "c-gzip", "c-snappy", "c-lz4", "c-zstd", "t-info", "t-error"];
    let reader = consumer(out.path(), &broker, &topics, "check");
    wait_output(out.path(), "200 records in each of 6 topics", &[&agent, &reader], &broker, |v| {
        v.len() >= 1200
    });
    let all = consumed(out.path());
    for codec in CODECS {
        let topic = format!("c-{codec}");
        let records: Vec<&Value> = all.iter().filter(|e| e["kafka"]["topic"] == *topic).collect();
        let ids: BTreeSet<u64> = records.iter().map(|e| id_of(e)).collect();
        assert_eq!(ids, (0..200).collect(), "{topic}: every id once");
        assert_eq!(records.len(), 200, "{topic}: no duplicates");
        let mut partition_of_key = BTreeMap::new();
        for e in &records {
            let id = id_of(e);
            let model = format!("model-{}", id % 5);
            assert_eq!(e["kafka"]["key"], *model, "{topic}: key of {id}: {e:#}");
            assert_eq!(e["kafka"]["headers"]["trace-id"], format!("t{id}"), "{e:#}");
            assert_eq!(e["kafka"]["headers"]["model"], *model, "{e:#}");
            let value: Value = serde_json::from_str(e["message"].as_str().unwrap()).unwrap();
            assert_eq!(value["message"], format!("prediction {id}"), "{topic}: the whole event");
            let p = e["kafka"]["partition"].as_i64().unwrap();
            assert_eq!(*partition_of_key.entry(model).or_insert(p), p, "a key keeps its partition");
        }
        assert!(partition_of_key.values().collect::<BTreeSet<_>>().len() > 1, "keys spread");
    }
    // The text codec sends the message alone; the topic came from each event's level.
    for (topic, errors) in [("t-error", true), ("t-info", false)] {
        let messages: BTreeSet<String> = all
            .iter()
            .filter(|e| e["kafka"]["topic"] == topic)
            .map(|e| e["message"].as_str().unwrap().to_string())
            .collect();
        let want: BTreeSet<String> = (0..200)
            .filter(|i| (i % 3 == 0) == errors)
            .map(|i| format!("prediction {i}"))
            .collect();
        assert_eq!(messages, want, "{topic}");
    }
    // Sent counts what the broker confirmed; the consumer may see a record before the agent
    // has its delivery report.
    let sent = || agent.metric("weir_component_sent_events_total", &[("component_kind", "sink")]);
    assert!(wait_for(WAIT, || sent() == 1200.0), "{}", agent.metrics());
    stop_cleanly(agent);
    assert!(reader.stop().success());
}

#[test]
fn a_broker_stopped_and_started_again_loses_nothing() {
    let broker = Broker::start();
    let port = broker.port();
    broker.create_topic("outage", 2);

    let agent_dir = tempfile::tempdir().unwrap();
    let input = agent_dir.path().join("in.log");
    append_lines(&input, 0..100);
    // librdkafka gives a record up after 3 s here, so weir's own producing again is tried too.
    let agent = Weir::start(
        agent_dir.path(),
        &format!(
            r#"
[sources.lines]
type = "file"
include = ["{{{{dir}}}}/in.log"]

[sinks.kafka]
type = "kafka"
inputs = ["lines"]
bootstrap_servers = "{address}"
topic = "outage"
encoding.codec = "text"
message_timeout_ms = 3000
librdkafka_options = {{ "reconnect.backoff.max.ms" = "500", "topic.metadata.refresh.interval.ms" = "1000" }}
"#,
            address = broker.address()
        ),
    );
    let ids = |v: &[Value]| -> BTreeSet<u64> { v.iter().map(id_of).collect() };
    let metric = |name: &str| agent.metric(name, &[("component_id", "kafka")]);
    let sent = || metric("weir_component_sent_events_total");
    let before = tempfile::tempdir().unwrap();
    let reader = consumer(before.path(), &broker, &["outage"], "outage-check");
    wait_output(before.path(), "records 0..100", &[&agent, &reader], &broker, |v| {
        ids(v) == (0..100).collect()
    });
    // A consumer may read a record before its producer has the broker's answer: wait for the
    // delivery reports, so that the outage starts with nothing in flight.
    assert!(wait_for(WAIT, || sent() == 100.0), "{}", agent.metrics());
    // This reader's positions would outlive the broker's in-memory log (a restarted broker
    // could hold fewer records than a position, or more, and the reader would skip some):
    // it stops here, and a fresh one reads the restarted broker.
    assert!(reader.stop().success());

    // The broker goes away (with its in-memory log) while lines keep coming.
    drop(broker);
    append_lines(&input, 100..200);
    let tried = wait_for(WAIT, || {
        metric("weir_component_received_events_total") == 200.0
            && agent.metric(
                "weir_component_errors_total",
                &[("component_id", "kafka"), ("error_type", "delivery_failed")],
            ) >= 1.0
    });
    assert!(tried, "the records were not tried while the broker was away:\n{}", agent.stderr());
    assert_eq!(sent(), 100.0, "nothing confirmed meanwhile");

    let broker = Broker::start_on(port);
    broker.create_topic("outage", 2);
    let after = tempfile::tempdir().unwrap();
    let reader = consumer(after.path(), &broker, &["outage"], "outage-check-after");
    wait_output(
        after.path(),
        "records 100..200 after the restart",
        &[&agent, &reader],
        &broker,
        |v| (100..200).all(|i| ids(v).contains(&i)),
    );
    let got = ids(&consumed(after.path()));
    assert_eq!(got, (100..200).collect(), "the restarted broker holds 100..200, none invented");
    // The consumer saw every record; the agent's delivery reports may come a moment later.
    assert!(wait_for(WAIT, || sent() == 200.0), "{}", agent.metrics());
    stop_cleanly(agent);
    assert!(reader.stop().success());
}

#[test]
fn records_the_broker_cannot_take_become_dead_letters() {
    let broker = Broker::start();
    broker.create_topic("good", 1);
    let agent_dir = tempfile::tempdir().unwrap();
    let input = agent_dir.path().join("in.log");
    let mut f = std::fs::File::create(&input).unwrap();
    for i in 0..10 {
        writeln!(f, r#"{{"id":{i},"topic":"good","message":"ok {i}"}}"#).unwrap();
    }
    // One record too large for the producer's limit, one for a topic that does not exist, one
    // without the field the topic template needs.
    writeln!(f, r#"{{"id":100,"topic":"good","message":"{}"}}"#, "x".repeat(5000)).unwrap();
    writeln!(f, r#"{{"id":101,"topic":"no-such-topic","message":"lost?"}}"#).unwrap();
    writeln!(f, r#"{{"id":102,"message":"no topic field"}}"#).unwrap();
    drop(f);
    let agent = Weir::start(
        agent_dir.path(),
        &format!(
            r#"
[sources.lines]
type = "file"
include = ["{{{{dir}}}}/in.log"]

[transforms.fields]
type = "parse_json"
inputs = ["lines"]

[sinks.kafka]
type = "kafka"
inputs = ["fields"]
bootstrap_servers = "{address}"
topic = "{{{{ topic }}}}"
librdkafka_options = {{ "message.max.bytes" = "2000", "topic.metadata.propagation.max.ms" = "2000", "allow.auto.create.topics" = "false" }}
"#,
            address = broker.address()
        ),
    );
    let letters_dir = agent_dir.path().join("data/dead_letter");
    let letters = || -> Vec<Value> {
        let Ok(entries) = std::fs::read_dir(&letters_dir) else { return Vec::new() };
        entries
            .flatten()
            .flat_map(|e| read_lines(&e.path()))
            .map(|l| serde_json::from_str(&l).unwrap())
            .collect()
    };
    let got = wait_for(WAIT, || letters().len() >= 3);
    assert!(got, "dead letters: {:#?}\n{}\n{}", letters(), agent.stderr(), broker.log());
    let mut reasons: Vec<String> =
        letters().iter().map(|l| l["error"]["type"].as_str().unwrap().to_string()).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        ["message_too_large", "missing_field", "unknown_topic"],
        "{:#?}",
        letters()
    );
    for l in letters() {
        let original: Value =
            serde_json::from_str(l["event"]["original"].as_str().unwrap()).unwrap();
        assert!(original["id"].as_u64().unwrap() >= 100, "{l:#}");
        assert_eq!(l["weir"]["dead_letter"]["sink"], "kafka");
    }

    let out = tempfile::tempdir().unwrap();
    let reader = consumer(out.path(), &broker, &["good"], "good-check");
    wait_output(out.path(), "the 10 good records", &[&agent, &reader], &broker, |v| v.len() >= 10);
    let ids: BTreeSet<u64> = consumed(out.path()).iter().map(id_of).collect();
    assert_eq!(ids, (0..10).collect());
    stop_cleanly(agent);
    assert!(reader.stop().success());
}

/// librdkafka's queue holds 10 records here; the broker hangs (SIGSTOP) while 2000 lines
/// come: the full queue makes the sink wait with the records it took, unconfirmed and not
/// failed. Once the broker goes on, every record arrives exactly once and nothing was dropped,
/// produced again or sent to dead letters.
#[test]
fn a_full_producer_queue_is_backpressure_not_a_drop() {
    let broker = Broker::start();
    broker.create_topic("full", 1);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.log");
    append_lines(&input, 0..10);
    // message_timeout_ms far longer than the pause, so that librdkafka keeps the queued
    // records rather than failing them.
    let agent = Weir::start(
        dir.path(),
        &format!(
            r#"
[sources.lines]
type = "file"
include = ["{{{{dir}}}}/in.log"]

[sinks.kafka]
type = "kafka"
inputs = ["lines"]
bootstrap_servers = "{address}"
topic = "full"
encoding.codec = "text"
message_timeout_ms = 600000
librdkafka_options = {{ "queue.buffering.max.messages" = "10" }}
"#,
            address = broker.address()
        ),
    );
    let metric = |name: &str| agent.metric(name, &[("component_id", "kafka")]);
    let sent = || metric("weir_component_sent_events_total");
    assert!(wait_for(WAIT, || sent() == 10.0), "{}\n{}", agent.metrics(), agent.stderr());

    broker.pause();
    append_lines(&input, 10..2010);
    // The sink has had more records than the queue holds (10 confirmed before, at most 10
    // queued now) and none is confirmed: it waits with the rest in hand. How many it holds
    // depends on how the source batched the lines, so only the lower bound is checked; the
    // proof that nothing was dropped is the count after the broker goes on.
    let received = || metric("weir_component_received_events_total");
    let holding = wait_for(WAIT, || received() >= 21.0);
    assert!(holding, "the sink took no new events:\n{}\n{}", agent.metrics(), agent.stderr());
    assert_eq!(sent(), 10.0, "nothing is confirmed by a hanging broker");
    let errors = || agent.metric("weir_component_errors_total", &[("component_id", "kafka")]);
    assert_eq!(errors(), 0.0, "a full queue is no error: {}", agent.metrics());

    broker.resume();
    assert!(wait_for(WAIT, || sent() == 2010.0), "{}\n{}", agent.metrics(), agent.stderr());
    let out = tempfile::tempdir().unwrap();
    let reader = consumer(out.path(), &broker, &["full"], "full-check");
    wait_output(out.path(), "records 0..2010", &[&agent, &reader], &broker, |v| v.len() >= 2010);
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for e in consumed(out.path()) {
        *counts.entry(id_of(&e)).or_default() += 1;
    }
    assert_eq!(counts.len(), 2010, "every record");
    assert!(counts.values().all(|&c| c == 1), "each once");
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), (0..2010).collect::<Vec<_>>());
    assert_eq!(errors(), 0.0, "nothing failed and was produced again");
    assert_eq!(agent.metric("weir_dead_letter_events_total", &[]), 0.0, "no dead letters");
    stop_cleanly(agent);
    assert!(reader.stop().success());
}

/// SASL/SCRAM-SHA-512 against a broker that requires it (tansu with `--authentication`): the
/// sink produces and the source reads back as user `weir`; a sink with a wrong password is
/// refused by the broker, which writes nothing, and weir acknowledges nothing. tansu's own
/// client speaks no SASL, so the user and the topic are made first on the same SQLite store
/// with authentication off, and the broker is started again requiring it.
#[test]
fn sasl_scram_to_a_broker_that_requires_it() {
    let store = tempfile::tempdir().unwrap();
    let port = crate::support::free_port();
    let setup = Broker::start_stored(store.path(), port, false);
    setup.create_topic("secured", 2);
    setup.create_user("weir", "pass-w0rd", "scram512");
    drop(setup);
    let broker = Broker::start_stored(store.path(), port, true);

    let pipeline = |password: &str| {
        format!(
            r#"
[sources.lines]
type = "file"
include = ["{{{{dir}}}}/in.log"]

[sinks.kafka]
type = "kafka"
inputs = ["lines"]
bootstrap_servers = "{address}"
topic = "secured"
encoding.codec = "text"
sasl = {{ mechanism = "SCRAM-SHA-512", username = "weir", password = "{password}" }}
"#,
            address = broker.address()
        )
    };
    let agent_dir = tempfile::tempdir().unwrap();
    append_lines(&agent_dir.path().join("in.log"), 0..100);
    let agent = Weir::start(agent_dir.path(), &pipeline("pass-w0rd"));

    let out = tempfile::tempdir().unwrap();
    let sasl =
        r#"sasl = { mechanism = "SCRAM-SHA-512", username = "weir", password = "pass-w0rd" }"#;
    let reader = consumer_with(out.path(), &broker, &["secured"], "secured-check", sasl);
    let ids = |v: &[Value]| -> BTreeSet<u64> { v.iter().map(id_of).collect() };
    wait_output(out.path(), "records 0..100", &[&agent, &reader], &broker, |v| {
        ids(v) == (0..100).collect()
    });
    let sent =
        |w: &Weir| w.metric("weir_component_sent_events_total", &[("component_id", "kafka")]);
    assert!(wait_for(WAIT, || sent(&agent) == 100.0), "{}", agent.metrics());
    stop_cleanly(agent);

    // A wrong password: the broker refuses the session, librdkafka says so, nothing is
    // written or acknowledged.
    let wrong_dir = tempfile::tempdir().unwrap();
    append_lines(&wrong_dir.path().join("in.log"), 1000..1010);
    let wrong = Weir::start(wrong_dir.path(), &pipeline("not-the-password"));
    let refused = wait_for(WAIT, || wrong.stderr().contains("SASL authentication error"));
    assert!(refused, "no authentication error logged:\n{}\n{}", wrong.stderr(), broker.log());
    assert_eq!(sent(&wrong), 0.0, "{}", wrong.metrics());
    assert!(
        ids(&consumed(out.path())).iter().all(|&i| i < 1000),
        "nothing from the wrong password"
    );
    assert_eq!(consumed(out.path()).len(), 100, "every record once");
    drop(wrong);
    assert!(reader.stop().success());
}
