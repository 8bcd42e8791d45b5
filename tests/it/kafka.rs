//! The `kafka` source against a real Kafka-protocol broker (tansu, started here on a loopback
//! port with in-memory storage), fed by an rdkafka producer: consuming from the beginning,
//! resuming from the committed offset after a restart, and two weir instances sharing a
//! consumer group, one taking over when the other stops. Every record is counted by its id.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use serde_json::Value;

use crate::support::{Weir, free_port, read_json_lines, read_lines, wait_for};

const WAIT: Duration = Duration::from_secs(60);

/// The broker binary: `tansu` on the PATH or in cargo's `bin` directory (`$CARGO_HOME/bin`,
/// `~/.cargo/bin`), where scripts/test.sh installs it.
fn broker_bin() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME").map(PathBuf::from);
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(cargo_home.map(|c| c.join("bin")))
        .chain([home.join(".cargo/bin")])
        .map(|d| d.join("tansu"));
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "the Kafka test broker `tansu` is not installed; run scripts/test.sh, or \
             cargo install tansu --version 0.6.0 --locked --features dynostore,libsql"
        )
    })
}

/// A tansu broker on a loopback port, storing in memory, stopped when dropped.
pub(crate) struct Broker {
    child: Child,
    port: u16,
    /// Its working directory (logs, and the SQLite file of a stored broker).
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Broker {
    pub(crate) fn start() -> Self {
        Self::start_on(free_port())
    }

    /// A broker on `port` (a restarted broker keeps its address; with in-memory storage it
    /// starts empty).
    pub(crate) fn start_on(port: u16) -> Self {
        // An empty working directory: tansu reads a `.env` file from it if there is one.
        let temp = tempfile::tempdir().unwrap();
        let mut broker = Self::spawn(temp.path(), port, "memory://tansu/", &[]);
        broker._temp = Some(temp);
        broker
    }

    /// A broker storing in SQLite in `dir` (kept across restarts, unlike memory), requiring
    /// SASL authentication when `authentication` is set.
    pub(crate) fn start_stored(dir: &Path, port: u16, authentication: bool) -> Self {
        let auth: &[&str] = if authentication { &["--authentication"] } else { &[] };
        Self::spawn(dir, port, "sqlite://tansu.db", auth)
    }

    fn spawn(dir: &Path, port: u16, storage: &str, args: &[&str]) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(broker_bin())
            .current_dir(dir)
            .args(["broker", "--storage-engine", storage])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(args)
            .stdout(std::fs::File::create(dir.join("broker.log")).unwrap())
            .stderr(Stdio::from(std::fs::File::create(dir.join("broker.err")).unwrap()))
            .spawn()
            .expect("start tansu");
        let broker = Self { child, port, dir: dir.to_path_buf(), _temp: None };
        let up = wait_for(WAIT, || TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert!(up, "tansu did not listen; stderr:\n{}", broker.log());
        broker
    }

    pub(crate) fn log(&self) -> String {
        ["broker.log", "broker.err"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A SCRAM user (`mechanism`: scram256 or scram512), made with tansu's own client, which
    /// speaks no SASL: on a broker that does not require it.
    pub(crate) fn create_user(&self, name: &str, password: &str, mechanism: &str) {
        self.tansu(&["user", "create", name, password, "--mechanism", mechanism]);
    }

    pub(crate) fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn create_topic(&self, name: &str, partitions: u32) {
        self.tansu(&["topic", "create", name, "--partitions", &partitions.to_string()]);
    }

    /// Runs a tansu client command against this broker; it must succeed.
    fn tansu(&self, args: &[&str]) {
        let out = Command::new(broker_bin())
            .current_dir(&self.dir)
            .args(args)
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .output()
            .expect("run tansu");
        assert!(
            out.status.success(),
            "tansu {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Produces records `ids` to `topic`, record `i` to partition `i % partitions`, each with
    /// key `model-{i % 5}` and a `trace-id` header; waits until every one is acknowledged.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Freezes the broker (SIGSTOP): its connections stay open and nothing is answered, as
    /// with a broker that hangs. `resume` lets it go on with its log intact.
    pub(crate) fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub(crate) fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on the broker this test started and has not yet reaped.
        let r = unsafe { libc::kill(pid, signal) };
        assert_eq!(r, 0, "kill({pid}, {signal}): {}", std::io::Error::last_os_error());
    }

    fn produce(&self, topic: &str, partitions: i32, ids: std::ops::Range<usize>) {
        let records = ids
            .map(|i| ((i % partitions as usize) as i32, format!("model-{}", i % 5), i))
            .collect();
        self.produce_records(topic, records);
    }

    /// Produces `(partition, key, id)` records in order; waits until each is acknowledged.
    fn produce_records(&self, topic: &str, records: Vec<(i32, String, usize)>) {
        let delivered = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        // tansu 0.6.0 wants one record per batch and no compression.
        let producer: BaseProducer<Counting> = ClientConfig::new()
            .set("bootstrap.servers", self.address())
            .set("batch.num.messages", "1")
            .set("linger.ms", "0")
            .set("compression.type", "none")
            .set("message.timeout.ms", "30000")
            .create_with_context(Counting {
                delivered: Arc::clone(&delivered),
                failed: Arc::clone(&failed),
            })
            .expect("producer");
        let count = records.len();
        for (partition, key, i) in records {
            let payload = payload(i);
            let trace = format!("t{i}");
            let headers = OwnedHeaders::new()
                .insert(Header { key: "trace-id", value: Some(trace.as_str()) })
                .insert(Header { key: "hop", value: Some("a") })
                .insert(Header { key: "hop", value: Some("b") });
            let mut record = BaseRecord::to(topic)
                .partition(partition)
                .key(&key)
                .payload(&payload)
                .headers(headers);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((e, r)) => {
                        // The local queue is full: serve delivery reports, then retry.
                        assert!(
                            matches!(
                                e.rdkafka_error_code(),
                                Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                            ),
                            "produce: {e}"
                        );
                        producer.poll(Duration::from_millis(50));
                        record = r;
                    }
                }
            }
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(60)).expect("flush");
        assert_eq!(failed.load(Ordering::Relaxed), 0, "failed deliveries; broker:\n{}", self.log());
        assert_eq!(delivered.load(Ordering::Relaxed), count);
    }
}

impl Broker {
    /// The offset group `group` has committed for a partition (`None` when it has none).
    fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::{Offset, TopicPartitionList};
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.address())
            .set("group.id", group)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let committed =
            consumer.committed_offsets(tpl, Duration::from_secs(30)).expect("committed");
        match committed.find_partition(topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts delivery reports.
struct Counting {
    delivered: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn payload(i: usize) -> String {
    format!("{{\"id\":{i},\"text\":\"prediction served\"}}")
}

/// weir with a kafka source in group `group` writing JSON lines to `out.log` in `dir`.
fn start_weir(dir: &Path, broker: &Broker, topic: &str, group: &str) -> Weir {
    start_weir_to(dir, broker, topic, group, "{{dir}}/out.log")
}

/// As [`start_weir`], writing to the file sink path template `path`.
fn start_weir_to(dir: &Path, broker: &Broker, topic: &str, group: &str, path: &str) -> Weir {
    start_weir_with(dir, broker, topic, group, path, "")
}

/// As [`start_weir_to`], with `options` (TOML lines) added to the source's table.
fn start_weir_with(
    dir: &Path,
    broker: &Broker,
    topic: &str,
    group: &str,
    path: &str,
    options: &str,
) -> Weir {
    Weir::start(
        dir,
        &format!(
            r#"
[sources.kafka]
type = "kafka"
bootstrap_servers = "{address}"
group_id = "{group}"
topics = ["{topic}"]
auto_offset_reset = "earliest"
session_timeout_ms = 6000
librdkafka_options = {{ "statistics.interval.ms" = "500", "heartbeat.interval.ms" = "500" }}
{options}

[sinks.out]
type = "file"
inputs = ["kafka"]
path = "{path}"
encoding.codec = "json"
"#,
            address = broker.address()
        ),
    )
}

fn events(dir: &Path) -> Vec<Value> {
    read_json_lines(&dir.join("out.log"))
}

/// The record id of an event (from its JSON payload).
fn id_of(e: &Value) -> usize {
    let message = e["message"].as_str().expect("message");
    let v: Value = serde_json::from_str(message).expect("payload is the JSON we produced");
    v["id"].as_u64().expect("id") as usize
}

/// How many times each id arrived, over the outputs of `dirs`.
fn counts(dirs: &[&Path]) -> BTreeMap<usize, usize> {
    let mut c = BTreeMap::new();
    for d in dirs {
        for e in events(d) {
            *c.entry(id_of(&e)).or_insert(0) += 1;
        }
    }
    c
}

fn wait_all(dirs: &[&Path], ids: std::ops::Range<usize>, weirs: &[&Weir], broker: &Broker) {
    let want: BTreeSet<usize> = ids.collect();
    let ok = wait_for(WAIT, || {
        let c = counts(dirs);
        want.iter().all(|i| c.contains_key(i))
    });
    if !ok {
        let c = counts(dirs);
        let missing: Vec<_> = want.iter().filter(|i| !c.contains_key(i)).take(20).collect();
        let stderr: Vec<String> = weirs.iter().map(|w| w.stderr()).collect();
        panic!(
            "{} of {} records missing (first: {missing:?})\nweir stderr:\n{}\nbroker:\n{}",
            want.iter().filter(|i| !c.contains_key(i)).count(),
            want.len(),
            stderr.join("\n----\n"),
            broker.log()
        );
    }
}

/// Whether `weir` reports a consumer lag of zero (records between the committed offset and
/// the partition's end) for each of partitions `0..partitions`: everything read is committed.
/// A partition with no lag series yet does not count as committed.
fn all_committed(weir: &Weir, partitions: usize) -> bool {
    let text = weir.metrics();
    (0..partitions).all(|p| {
        let p = p.to_string();
        let labels = [("component_id", "kafka"), ("partition", p.as_str())];
        text.lines().any(|l| {
            l.starts_with("weir_kafka_consumer_lag{")
                && labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
                && l.ends_with(" 0")
        })
    })
}

/// Asserts that the output in `dir` holds exactly the records `ids`, each once.
fn read_once(dir: &Path, ids: std::ops::Range<usize>, what: &str) {
    let c = counts(&[dir]);
    assert_eq!(c.keys().copied().collect::<Vec<_>>(), ids.collect::<Vec<_>>(), "{what}");
    assert!(c.values().all(|n| *n == 1), "{what}, each once: {c:?}");
}

fn assigned(weir: &Weir) -> f64 {
    weir.metric("weir_kafka_assigned_partitions", &[("component_id", "kafka")])
}

#[test]
fn consumes_from_the_beginning_with_record_metadata() {
    let broker = Broker::start();
    broker.create_topic("model-logs", 3);
    broker.produce("model-logs", 3, 0..300);

    let dir = tempfile::tempdir().unwrap();
    let weir = start_weir(dir.path(), &broker, "model-logs", "weir-it");
    wait_all(&[dir.path()], 0..300, &[&weir], &broker);
    let c = counts(&[dir.path()]);
    assert!(c.values().all(|n| *n == 1), "duplicates: {c:?}");
    assert_eq!(c.len(), 300);

    let all = events(dir.path());
    let e = all.iter().find(|e| id_of(e) == 7).unwrap();
    assert_eq!(e["kafka"]["topic"], "model-logs", "{e:#}");
    assert_eq!(e["kafka"]["partition"], 1);
    // Record 7 is the third record of partition 1 (ids 1, 4, 7, ...).
    assert_eq!(e["kafka"]["offset"], 2);
    assert_eq!(e["kafka"]["key"], "model-2");
    assert_eq!(e["kafka"]["headers"]["trace-id"], "t7");
    assert_eq!(e["kafka"]["headers"]["hop"], serde_json::json!(["a", "b"]));
    let ts = chrono::DateTime::parse_from_rfc3339(e["@timestamp"].as_str().unwrap()).unwrap();
    assert!((chrono::Utc::now() - ts.to_utc()).num_seconds().abs() < 300, "{ts}");
    // Within a partition, records arrive in offset order.
    for p in 0..3 {
        let offsets: Vec<i64> = all
            .iter()
            .filter(|e| e["kafka"]["partition"] == p)
            .map(|e| e["kafka"]["offset"].as_i64().unwrap())
            .collect();
        assert_eq!(offsets, (0..100).collect::<Vec<_>>(), "partition {p}");
    }

    let metric = |name: &str, labels: &[(&str, &str)]| {
        let mut l = vec![("component_id", "kafka")];
        l.extend_from_slice(labels);
        weir.metric(name, &l)
    };
    assert_eq!(metric("weir_component_received_events_total", &[]), 300.0);
    assert_eq!(assigned(&weir), 3.0);
    // Lag is measured against the committed offset: it falls to zero once all is committed.
    let lag_zero = wait_for(WAIT, || all_committed(&weir, 3));
    assert!(lag_zero, "lag did not reach 0:\n{}", weir.metrics());
    broker.produce("model-logs", 3, 300..303);
    wait_all(&[dir.path()], 300..303, &[&weir], &broker);
    assert_eq!(metric("weir_component_errors_total", &[]), 0.0, "{}", weir.metrics());
    let status = weir.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_restart_resumes_from_the_committed_offset() {
    let broker = Broker::start();
    broker.create_topic("restarts", 2);
    broker.produce("restarts", 2, 0..150);

    // A clean stop commits everything delivered: the next instance starts exactly after it.
    let first = tempfile::tempdir().unwrap();
    let weir = start_weir(first.path(), &broker, "restarts", "weir-restart");
    wait_all(&[first.path()], 0..150, &[&weir], &broker);
    assert!(weir.stop().success());

    broker.produce("restarts", 2, 150..300);
    let second = tempfile::tempdir().unwrap();
    let weir = start_weir(second.path(), &broker, "restarts", "weir-restart");
    wait_all(&[first.path(), second.path()], 0..300, &[&weir], &broker);
    read_once(second.path(), 150..300, "after a clean stop, only the new records are read");

    // What the periodic commit has committed survives a hard kill: nothing is read again.
    // (Commits are periodic: the kill comes once the instance says all is committed, not as
    // soon as the events are written.)
    let committed = wait_for(WAIT, || all_committed(&weir, 2));
    assert!(committed, "150..300 not committed:\n{}", weir.metrics());
    let _ = weir.kill9();

    // A hard kill loses nothing: what was not committed is read again. This instance commits
    // only when it stops cleanly or loses its partitions, so all it reads before the kill is
    // uncommitted.
    let third = tempfile::tempdir().unwrap();
    let never = "commit_interval_ms = 3600000";
    let path = "{{dir}}/out.log";
    let weir = start_weir_with(third.path(), &broker, "restarts", "weir-restart", path, never);
    assert!(wait_for(WAIT, || assigned(&weir) == 2.0), "no partitions:\n{}", weir.stderr());
    broker.produce("restarts", 2, 300..600);
    let dirs = [first.path(), second.path(), third.path()];
    wait_all(&dirs, 0..600, &[&weir], &broker);
    let what = "after a hard kill with everything committed, only the new records are read";
    read_once(third.path(), 300..600, what);
    let _ = weir.kill9();

    let fourth = tempfile::tempdir().unwrap();
    let weir = start_weir(fourth.path(), &broker, "restarts", "weir-restart");
    wait_all(&[fourth.path()], 300..600, &[&weir], &broker);
    let c = counts(&[first.path(), second.path(), third.path(), fourth.path()]);
    assert_eq!(c.len(), 600, "no record lost, none invented");
    let twice: Vec<usize> = c.iter().filter(|(_, n)| **n > 1).map(|(i, _)| *i).collect();
    assert_eq!(
        twice,
        (300..600).collect::<Vec<_>>(),
        "exactly the records after the last commit are read again"
    );
    assert!(c.values().all(|n| *n <= 2), "{c:?}");
    assert!(weir.stop().success());
}

#[test]
fn two_instances_share_a_group_and_one_takes_over_when_the_other_stops() {
    let broker = Broker::start();
    broker.create_topic("shared", 4);
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a = start_weir(a_dir.path(), &broker, "shared", "weir-group");
    assert!(wait_for(WAIT, || assigned(&a) == 4.0), "a got no partitions:\n{}", a.stderr());
    let b = start_weir(b_dir.path(), &broker, "shared", "weir-group");
    let split = wait_for(WAIT, || {
        assigned(&a) > 0.0 && assigned(&b) > 0.0 && assigned(&a) + assigned(&b) == 4.0
    });
    assert!(
        split,
        "partitions not split: a {} b {}\n{}\n{}",
        assigned(&a),
        assigned(&b),
        a.stderr(),
        b.stderr()
    );

    broker.produce("shared", 4, 0..400);
    let dirs = [a_dir.path(), b_dir.path()];
    wait_all(&dirs, 0..400, &[&a, &b], &broker);
    let partitions = |d: &Path| -> BTreeSet<i64> {
        events(d).iter().map(|e| e["kafka"]["partition"].as_i64().unwrap()).collect()
    };
    let (pa, pb) = (partitions(a_dir.path()), partitions(b_dir.path()));
    assert!(!pa.is_empty() && !pb.is_empty(), "a read {pa:?}, b read {pb:?}");
    assert!(pa.is_disjoint(&pb), "a partition was read by both: a {pa:?}, b {pb:?}");
    assert_eq!(pa.union(&pb).count(), 4);
    let c = counts(&dirs);
    assert!(c.values().all(|n| *n == 1), "duplicates while both ran");

    // b stops: its partitions move to a, which continues from b's committed offsets.
    assert!(b.stop().success());
    assert!(wait_for(WAIT, || assigned(&a) == 4.0), "a did not take over:\n{}", a.stderr());
    broker.produce("shared", 4, 400..800);
    wait_all(&dirs, 0..800, &[&a], &broker);
    let c = counts(&dirs);
    assert_eq!(c.len(), 800);
    let twice: Vec<usize> = c.iter().filter(|(_, n)| **n > 1).map(|(i, _)| *i).collect();
    assert!(twice.is_empty(), "delivered twice after a clean hand-over: {twice:?}");
    let taken_over: BTreeSet<i64> = events(a_dir.path())
        .iter()
        .filter(|e| id_of(e) >= 400)
        .map(|e| e["kafka"]["partition"].as_i64().unwrap())
        .collect();
    assert_eq!(taken_over.len(), 4, "a reads every partition after the take-over");
    assert!(a.stop().success());
}

#[test]
fn an_undelivered_record_holds_its_partition_until_it_is_read_again() {
    let broker = Broker::start();
    broker.create_topic("held", 1);
    // Record 10 goes to `blocked.log`, which is a directory: the file sink cannot write it and
    // marks it errored. The records around it are delivered.
    let out = tempfile::tempdir().unwrap();
    std::fs::create_dir(out.path().join("blocked.log")).unwrap();
    let key = |i: usize| if i == 10 { "blocked" } else { "good" }.to_string();
    let path = format!("{}/{{{{ kafka.key }}}}.log", out.path().display());
    let good = |n: usize| read_lines(&out.path().join("good.log")).len() >= n;
    let lag = |w: &Weir| {
        w.metric("weir_kafka_consumer_lag", &[("component_id", "kafka"), ("partition", "0")])
    };

    let first = tempfile::tempdir().unwrap();
    let weir = start_weir_to(first.path(), &broker, "held", "weir-held", &path);
    // Two rounds, so that records 0..9 are acknowledged in batches of their own.
    broker.produce_records("held", (0..10).map(|i| (0, key(i), i)).collect());
    assert!(wait_for(WAIT, || good(10)), "good records missing:\n{}", weir.stderr());
    assert!(wait_for(WAIT, || lag(&weir) == 0.0), "first round not committed");
    broker.produce_records("held", (10..20).map(|i| (0, key(i), i)).collect());
    assert!(wait_for(WAIT, || good(19)), "good records missing:\n{}", weir.stderr());
    // The committed offset stays at 10, before the failed record, although 11..19 went out.
    let held = wait_for(WAIT, || lag(&weir) == 10.0);
    assert!(held, "lag {} (expected 10):\n{}", lag(&weir), weir.metrics());
    assert!(weir.stderr().contains("offset stays before them"), "{}", weir.stderr());
    assert!(weir.stop().success());
    assert_eq!(broker.committed("weir-held", "held", 0), Some(10), "a clean stop keeps the hold");

    // Once the destination works, a restart reads the failed record again (and the ones after
    // it: at least once).
    std::fs::remove_dir(out.path().join("blocked.log")).unwrap();
    let second = tempfile::tempdir().unwrap();
    let weir = start_weir_to(second.path(), &broker, "held", "weir-held", &path);
    let ok = wait_for(WAIT, || !read_lines(&out.path().join("blocked.log")).is_empty());
    assert!(ok, "the failed record was not read again:\n{}", weir.stderr());
    let blocked = read_json_lines(&out.path().join("blocked.log"));
    assert_eq!(blocked.len(), 1);
    assert_eq!(id_of(&blocked[0]), 10);
    assert_eq!(blocked[0]["kafka"]["offset"], 10);
    assert!(wait_for(WAIT, || good(28)), "records after it are read again too");
    assert!(wait_for(WAIT, || lag(&weir) == 0.0), "lag {}", lag(&weir));
    assert!(weir.stop().success());
    assert_eq!(broker.committed("weir-held", "held", 0), Some(20));
}

#[test]
fn the_example_pipeline_validates_and_runs() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/kafka-to-console.toml");
    assert_eq!(crate::support::validate(&[&path]), (0, "Configuration OK\n".to_string()));

    let broker = Broker::start();
    broker.create_topic("model-server-logs", 2);
    broker.produce("model-server-logs", 2, 0..20);
    let text = std::fs::read_to_string(&path).unwrap();
    let pipeline = text
        .replace("${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}", &broker.address())
        .replace("statistics.interval.ms\" = \"10000", "statistics.interval.ms\" = \"500");
    assert_ne!(pipeline, text, "the example's broker address is no longer overridable");
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &pipeline);
    let printed = || -> Vec<Value> {
        read_lines(&dir.path().join("stdout"))
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    };
    assert!(wait_for(WAIT, || printed().len() >= 20), "{}", weir.stderr());
    let events = printed();
    // The JSON value was parsed into fields.
    let ids: BTreeSet<u64> = events.iter().filter_map(|e| e["id"].as_u64()).collect();
    assert_eq!(ids, (0..20).collect(), "{:#?}", events.first());
    assert!(events.iter().all(|e| e["text"] == "prediction served" && e["kafka"]["topic"] == "model-server-logs"));
    assert!(weir.stop().success());
}
