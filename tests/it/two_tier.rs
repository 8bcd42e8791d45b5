//! The two-tier topology of README's "Scaling out", end to end, with the pipelines of
//! `pipelines/` as they ship: files -> two weir agents (`kafka` sink) -> a topic of four
//! partitions on the real broker (tansu) -> two weir aggregators in one consumer group
//! (`kafka` source -> `parse_json` -> `parse_model_log` -> the Elasticsearch stand-in).
//! One aggregator and one agent are killed with SIGKILL mid-run (each is replaced, as a
//! supervisor would); every line must be stored at least once.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::es_server::EsServer;
use crate::kafka::Broker;
use crate::support::{Weir, wait_for};

const WAIT: Duration = Duration::from_secs(120);
const LINES: usize = 3000;

fn pipeline_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines").join(name)
}

/// A shipped pipeline with its environment defaults replaced and without its own `data_dir`
/// and `[api]` (the test's harness adds its own).
fn shipped(name: &str, vars: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(pipeline_file(name)).unwrap();
    for (from, to) in vars {
        assert!(text.contains(from), "{name} no longer has {from}");
        text = text.replace(from, to);
    }
    text.lines()
        .filter(|l| {
            !l.starts_with("data_dir") && !l.starts_with("[api]") && !l.starts_with("address =")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn agent(dir: &Path, broker: &Broker) -> Weir {
    let text = shipped(
        "agent-to-kafka.toml",
        &[
            ("${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}", broker.address()),
            (
                "${MODEL_SERVER_LOGS:-/var/log/model-servers/*.log}",
                format!("{}/*.log", dir.display()),
            ),
            ("${KAFKA_TOPIC:-model-server-logs}", "tiers".into()),
        ],
    );
    Weir::start(dir, &text)
}

fn aggregator(dir: &Path, broker: &Broker, es: &EsServer) -> Weir {
    let text = shipped(
        "kafka-to-elasticsearch.toml",
        &[
            ("${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}", broker.address()),
            ("${WEIR_KAFKA_GROUP:-weir-aggregators}", "aggregators".into()),
            ("${KAFKA_TOPIC:-model-server-logs}", "tiers".into()),
            ("${ES_ENDPOINT:-http://127.0.0.1:9200}", es.url()),
        ],
    );
    // Faster group moves than production's defaults, so the test's take-over is quick.
    let text = text.replace(
        "auto_offset_reset = \"earliest\"",
        "auto_offset_reset = \"earliest\"\nsession_timeout_ms = 6000\n\
         librdkafka_options = { \"heartbeat.interval.ms\" = \"500\" }",
    );
    Weir::start(dir, &text)
}

fn assigned(w: &Weir) -> f64 {
    w.metric("weir_kafka_assigned_partitions", &[("component_id", "kafka")])
}

/// A TorchServe access line naming request `name`.
fn line(name: &str, i: usize) -> String {
    format!(
        "2026-12-07 10:{:02}:{:02},{:03} [INFO ] W-9000-resnet ACCESS_LOG - /10.0.0.7:{} \"POST /predictions/{name} HTTP/1.1\" 200 {}\n",
        (i / 60) % 60,
        i % 60,
        i % 1000,
        40000 + i % 20000,
        i % 97
    )
}

/// How many times each request name was stored, and whether every stored line was parsed.
fn stored(es: &EsServer) -> (BTreeMap<String, usize>, usize) {
    let re = regex::Regex::new(r"/predictions/(a[12]-\d+) ").unwrap();
    let state = es.state();
    let mut counts = BTreeMap::new();
    let mut unparsed = 0;
    for d in state.all_docs() {
        let text = d.to_string();
        if let Some(c) = re.captures(&text) {
            *counts.entry(c[1].to_string()).or_insert(0) += 1;
        }
        if d.get("error").is_some() {
            unparsed += 1;
        }
    }
    (counts, unparsed)
}

#[test]
fn agents_to_kafka_to_aggregators_survive_kill_9() {
    let broker = Broker::start();
    broker.create_topic("tiers", 4);
    let es = EsServer::start();

    let g1 = tempfile::tempdir().unwrap();
    let g2 = tempfile::tempdir().unwrap();
    let agg1 = aggregator(g1.path(), &broker, &es);
    let agg2 = aggregator(g2.path(), &broker, &es);
    let split = wait_for(WAIT, || {
        assigned(&agg1) > 0.0 && assigned(&agg2) > 0.0 && assigned(&agg1) + assigned(&agg2) == 4.0
    });
    assert!(split, "partitions not shared:\n{}\n{}", agg1.stderr(), agg2.stderr());

    let a1 = tempfile::tempdir().unwrap();
    let a2 = tempfile::tempdir().unwrap();
    let agent1 = agent(a1.path(), &broker);
    let agent2 = agent(a2.path(), &broker);

    // Both model servers write their lines in bursts while the kills happen.
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let files = [a1.path().join("model.log"), a2.path().join("model.log")];
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut outs: Vec<_> = files
                .iter()
                .map(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).unwrap())
                .collect();
            for start in (0..LINES).step_by(25) {
                for (n, out) in outs.iter_mut().enumerate() {
                    let burst: String =
                        (start..start + 25).map(|i| line(&format!("a{}-{i}", n + 1), i)).collect();
                    out.write_all(burst.as_bytes()).unwrap();
                }
                // The pace of a busy server (about 12 s in all), so the kills land mid-stream.
                std::thread::sleep(Duration::from_millis(100));
            }
            done.store(true, Ordering::SeqCst);
        })
    };

    let count = |es: &EsServer| stored(es).0.len();
    assert!(wait_for(WAIT, || count(&es) >= LINES / 4), "nothing stored:\n{}", agg1.stderr());
    assert!(!done.load(Ordering::SeqCst), "the writer finished before the first kill");
    let _ = agg1.kill9();
    // A supervisor starts a replacement. (Against tansu 0.6.0 the survivor alone was never
    // given the dead member's partitions: after the session timeout the group rebalanced and
    // handed the survivor its own two again.)
    let g3 = tempfile::tempdir().unwrap();
    let agg3 = aggregator(g3.path(), &broker, &es);
    assert!(
        wait_for(WAIT, || count(&es) >= LINES / 2),
        "stalled after the aggregator kill:\n{}",
        agg2.stderr()
    );
    assert!(!done.load(Ordering::SeqCst), "the writer finished before the second kill");
    let _ = agent1.kill9();
    let agent1 = agent(a1.path(), &broker);
    writer.join().unwrap();
    assert!(done.load(Ordering::SeqCst));

    let all = wait_for(WAIT, || count(&es) == 2 * LINES);
    let (counts, unparsed) = stored(&es);
    let missing: Vec<String> = (1..=2)
        .flat_map(|n| (0..LINES).map(move |i| format!("a{n}-{i}")))
        .filter(|k| !counts.contains_key(k))
        .take(20)
        .collect();
    assert!(
        all,
        "{} of {} lines stored; first missing {missing:?}\nagent 1:\n{}\naggregator 2:\n{}",
        counts.len(),
        2 * LINES,
        agent1.stderr(),
        agg2.stderr()
    );
    assert_eq!(unparsed, 0, "every stored line was parsed by parse_model_log");
    let doc = es.state().all_docs()[0].clone();
    assert!(doc["host"]["name"].is_string() && doc["log"]["file"]["path"].is_string(), "{doc:#}");
    let twice = counts.values().filter(|n| **n > 1).count();
    eprintln!("stored {} lines, {twice} of them more than once", counts.len());
    let live = assigned(&agg2) + assigned(&agg3);
    eprintln!("partitions: survivor {}, replacement {}", assigned(&agg2), assigned(&agg3));
    assert!(live > 0.0);
    crate::kafka_sink::stop_cleanly(agg3);
    assert!(agent1.stop().success());
    assert!(agent2.stop().success());
    crate::kafka_sink::stop_cleanly(agg2);
}
