//! The elasticsearch sink end to end: the real weir binary reads a file of JSON lines (real
//! Apache log lines as messages, each with an `id`), parses them and ships them to the
//! Elasticsearch stand-in, under each failure the stand-in can inject. Events are counted by
//! id at the far end: none lost, none duplicated where ids make retries idempotent.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use crate::es_server::{EsServer, EsState, Fault};
use crate::support::{Weir, test_data, wait_for};

/// Writes `n` JSON lines with ids `e00000`.. to `dir/input.log`; returns the ids.
fn write_input(dir: &Path, n: usize, poison_every: Option<usize>) -> Vec<String> {
    let apache = std::fs::read_to_string(test_data().join("loghub/Apache/Apache_2k.log"))
        .expect("shared loghub data");
    let lines: Vec<&str> = apache.lines().collect();
    let mut out = String::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("e{i:05}");
        let mut doc = serde_json::json!({
            "id": id,
            "message": lines[i % lines.len()],
            "log": {"level": if i % 7 == 0 { "error" } else { "notice" }},
            "service": {"name": "apache"},
        });
        if poison_every.is_some_and(|p| i % p == 0) {
            doc["poison"] = serde_json::json!("not a number");
        }
        out.push_str(&doc.to_string());
        out.push('\n');
        ids.push(id);
    }
    std::fs::write(dir.join("input.log"), out).unwrap();
    ids
}

fn pipeline(endpoints: &[String], extra: &str) -> String {
    let endpoints: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        r#"
[sources.in]
type = "file"
include = ["{{{{dir}}}}/input.log"]

[transforms.parsed]
type = "parse_json"
inputs = ["in"]

[sinks.es]
type = "elasticsearch"
inputs = ["parsed"]
endpoints = [{}]
batch.max_events = 200
batch.timeout_secs = 0.2
request.retry_initial_backoff_secs = 0.02
request.retry_max_duration_secs = 0.3
request.timeout_secs = 5
{extra}
"#,
        endpoints.join(", ")
    )
}

/// Waits until the stand-in holds `expected` documents; then the ids' counts.
fn wait_for_docs(es: &EsServer, weir: &Weir, expected: usize) -> HashMap<String, usize> {
    let ok = wait_for(Duration::from_secs(60), || es.state().doc_count() >= expected);
    assert!(
        ok,
        "the stand-in holds {} documents, expected {expected}; weir stderr:\n{}",
        es.state().doc_count(),
        weir.stderr()
    );
    es.state().count_by("id")
}

fn assert_each_once(counts: &HashMap<String, usize>, ids: &[String]) {
    let missing: Vec<&String> = ids.iter().filter(|id| !counts.contains_key(*id)).collect();
    assert!(missing.is_empty(), "{} ids lost, first {:?}", missing.len(), missing.first());
    let dup: Vec<(&String, &usize)> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(dup.is_empty(), "{} ids duplicated, e.g. {:?}", dup.len(), dup.first());
    assert_eq!(counts.len(), ids.len());
}

#[test]
fn delivers_every_event_once_gzip_and_ecs_fields() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start();
    let ids = write_input(dir.path(), 3000, None);
    let weir = Weir::start(
        dir.path(),
        &pipeline(&[es.url()], "index = \"weir-{{ service.name }}-%Y.%m.%d\"\nid_key = \"id\""),
    );
    let counts = wait_for_docs(&es, &weir, ids.len());
    assert_each_once(&counts, &ids);
    {
        let st = es.state();
        assert!(st.gzip_requests > 0 && st.gzip_requests == st.bulk_requests);
        let (name, index) = st.indices.iter().next().unwrap();
        assert!(name.starts_with("weir-apache-"), "index {name}");
        let doc = &index.docs[0].1;
        // The file source's ECS fields travel as nested objects.
        assert!(doc["@timestamp"].is_string(), "{doc}");
        assert!(doc["host"]["name"].is_string(), "{doc}");
        assert_eq!(doc["service"]["name"], "apache");
    }
    let sent = weir.metric(
        "weir_component_sent_events_total",
        &[("component_id", "es"), ("component_kind", "sink")],
    );
    assert!(
        wait_for(Duration::from_secs(60), || {
            weir.metric("weir_component_sent_events_total", &[("component_id", "es")]) >= 3000.0
        }),
        "sent events metric {sent}"
    );
    assert!(
        weir.metric("weir_sink_requests_total", &[("component_id", "es"), ("status", "200")])
            >= 15.0
    );
    assert!(weir.metrics().contains("weir_sink_request_duration_seconds_bucket"));
    assert!(
        weir.stderr().contains("health check: Elasticsearch is reachable"),
        "{}",
        weir.stderr()
    );
    assert!(weir.stop().success());
}

#[test]
fn item_level_429_and_503_are_retried_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = EsState::default();
    for i in 0..6 {
        state
            .faults
            .push_back(Fault::Items { every: 3, status: if i % 2 == 0 { 429 } else { 503 } });
    }
    let es = EsServer::start_with(state);
    let ids = write_input(dir.path(), 1000, None);
    let weir = Weir::start(dir.path(), &pipeline(&[es.url()], "index = \"weir\"\nid_key = \"id\""));
    let counts = wait_for_docs(&es, &weir, ids.len());
    assert_each_once(&counts, &ids);
    // Retried items went alone: the actions sent exceed the events only by the items that
    // failed (every third of six requests of up to 200), not by whole batches. A request
    // that timed out on a loaded machine is sent again whole: its actions are not counted.
    let st = es.state();
    assert!(st.bulk_actions > ids.len(), "nothing was retried");
    assert!(
        st.bulk_actions - st.resent_actions <= ids.len() + 6 * 67,
        "{} actions ({} in requests sent again) for {} events",
        st.bulk_actions,
        st.resent_actions,
        ids.len()
    );
    drop(st);
    assert!(weir.metric("weir_sink_retries_total", &[("component_id", "es")]) >= 6.0);
    assert!(weir.stop().success());
}

#[test]
fn whole_request_429_and_5xx_and_resets_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = EsState::default();
    state.faults.extend([
        Fault::Status(429),
        Fault::Status(500),
        Fault::Reset,
        Fault::ResetAfterIndexing,
        Fault::Status(503),
        Fault::ResetAfterIndexing,
        Fault::Status(502),
    ]);
    let es = EsServer::start_with(state);
    let ids = write_input(dir.path(), 1500, None);
    let weir = Weir::start(dir.path(), &pipeline(&[es.url()], "index = \"weir\"\nid_key = \"id\""));
    let counts = wait_for_docs(&es, &weir, ids.len());
    // Documents indexed before a reset were sent again and answered 409: not duplicated.
    assert_each_once(&counts, &ids);
    // Three resets: each is a request without a response, then sent again.
    let broken =
        weir.metric("weir_sink_requests_total", &[("component_id", "es"), ("status", "error")]);
    assert_eq!(broken, 3.0);
    assert!(weir.stop().success());
}

#[test]
fn without_ids_a_reset_after_indexing_may_duplicate_but_never_loses() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = EsState::default();
    state.faults.extend([Fault::ResetAfterIndexing, Fault::Reset]);
    let es = EsServer::start_with(state);
    let ids = write_input(dir.path(), 600, None);
    let weir = Weir::start(dir.path(), &pipeline(&[es.url()], "index = \"weir\""));
    // Every id present is not enough: the first request's retry may still be waiting for its
    // backoff while later batches complete. Wait until weir counts every event as sent.
    let sent = |w: &Weir| w.metric("weir_component_sent_events_total", &[("component_id", "es")]);
    let ok = wait_for(Duration::from_secs(60), || {
        sent(&weir) >= ids.len() as f64 && es.state().count_by("id").len() == ids.len()
    });
    assert!(ok, "not every event was sent ({}); stderr:\n{}", sent(&weir), weir.stderr());
    let counts = es.state().count_by("id");
    let duplicated = counts.values().filter(|c| **c > 1).count();
    let resent = es.state().resent_indexed;
    // The first request's documents were indexed, then the connection broke: the same request
    // was sent again and its documents indexed under new ids. Nothing else is duplicated: every
    // duplicate came from a request sent again (that one, or one that timed out).
    assert!(
        duplicated > 0 && duplicated <= resent,
        "{duplicated} duplicated, {resent} indexed from requests sent again; requests {} \
         actions {} stderr:\n{}",
        es.state().bulk_requests,
        es.state().bulk_actions,
        weir.stderr()
    );
    assert!(weir.stop().success());
}

#[test]
fn rejected_items_are_counted_logged_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let state = EsState { poison_field: Some("poison".into()), ..EsState::default() };
    let es = EsServer::start_with(state);
    let ids = write_input(dir.path(), 1000, Some(10));
    let weir = Weir::start(dir.path(), &pipeline(&[es.url()], "index = \"weir\"\nid_key = \"id\""));
    let good: Vec<String> =
        ids.iter().enumerate().filter(|(i, _)| i % 10 != 0).map(|(_, id)| id.clone()).collect();
    let counts = wait_for_docs(&es, &weir, good.len());
    assert_each_once(&counts, &good);
    let rejected = |w: &Weir| {
        w.metric(
            "weir_sink_rejected_events_total",
            &[("component_id", "es"), ("reason", "document_parsing_exception")],
        )
    };
    assert!(
        wait_for(Duration::from_secs(60), || rejected(&weir) == 100.0),
        "rejected {}",
        rejected(&weir)
    );
    let log = weir.stderr();
    assert!(
        log.contains("document_parsing_exception")
            && log.contains("failed to parse field [poison]"),
        "{log}"
    );
    // Rejected items were not sent again (only whole requests that timed out, if any).
    let st = es.state();
    assert_eq!(st.bulk_actions - st.resent_actions, ids.len());
    drop(st);
    assert!(weir.stop().success());
}

#[test]
fn too_large_requests_are_split() {
    let dir = tempfile::tempdir().unwrap();
    let state = EsState { max_content_length: 20_000, ..EsState::default() };
    let es = EsServer::start_with(state);
    let ids = write_input(dir.path(), 800, None);
    let weir = Weir::start(
        dir.path(),
        &pipeline(&[es.url()], "index = \"weir\"\nid_key = \"id\"\ncompression = \"none\""),
    );
    let counts = wait_for_docs(&es, &weir, ids.len());
    assert_each_once(&counts, &ids);
    assert!(
        weir.metric("weir_sink_requests_total", &[("component_id", "es"), ("status", "413")])
            >= 1.0
    );
    assert!(weir.stop().success());
}

#[test]
fn data_stream_mode_uses_create_and_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start();
    let ids = write_input(dir.path(), 300, None);
    let weir = Weir::start(
        dir.path(),
        &pipeline(
            &[es.url()],
            "mode = \"data_stream\"\ndata_stream.dataset = \"{{ service.name }}\"\n\
             data_stream.namespace = \"test\"",
        ),
    );
    let counts = wait_for_docs(&es, &weir, ids.len());
    assert_each_once(&counts, &ids);
    let st = es.state();
    assert_eq!(st.indices.keys().collect::<Vec<_>>(), ["logs-apache-test"]);
    let doc = &st.indices["logs-apache-test"].docs[0].1;
    assert_eq!(doc["data_stream"]["dataset"], "apache");
    drop(st);
    assert!(weir.stop().success());
}

#[test]
fn fails_over_to_the_next_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start();
    // A port nothing listens on.
    let dead = format!("http://127.0.0.1:{}", crate::support::free_port());
    let ids = write_input(dir.path(), 1000, None);
    let weir =
        Weir::start(dir.path(), &pipeline(&[dead, es.url()], "index = \"weir\"\nid_key = \"id\""));
    let counts = wait_for_docs(&es, &weir, ids.len());
    assert_each_once(&counts, &ids);
    assert!(weir.stderr().contains("Elasticsearch unreachable"), "{}", weir.stderr());
    assert!(weir.stop().success());
}

#[test]
fn a_hung_server_holds_the_source_back_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let state =
        EsState { always: Some(Fault::Delay(Duration::from_secs(3600))), ..EsState::default() };
    let es = EsServer::start_with(state);
    // About 60 MB of input: far more than the sink's buffer and batches may hold.
    write_input(dir.path(), 200_000, None);
    let weir = Weir::start(
        dir.path(),
        &pipeline(
            &[es.url()],
            "index = \"weir\"\nid_key = \"id\"\nrequest.concurrency = 2\nbuffer.max_bytes = 4000000",
        ),
    );
    let read =
        |w: &Weir| w.metric("weir_component_received_bytes_total", &[("component_id", "in")]);
    // The source reads until every hop is full, then stops.
    let mut last = -1.0;
    let settled = wait_for(Duration::from_secs(60), || {
        let now = read(&weir);
        let same = now == last && now > 0.0;
        last = now;
        if !same {
            std::thread::sleep(Duration::from_millis(500));
        }
        same
    });
    assert!(settled, "the source never stopped reading");
    let total = std::fs::metadata(dir.path().join("input.log")).unwrap().len() as f64;
    assert!(last < total * 0.6, "the source read {last} of {total} bytes despite a hung sink");
    let rss = weir.rss_bytes();
    eprintln!("hung sink: source read {last} of {total} bytes; resident memory {rss} bytes");
    // Everything read would take far more: the 33 MB of input parse into roughly 700 MB of
    // event trees.
    assert!(rss < 300 * 1024 * 1024, "resident memory {rss} bytes");
    let buffered = weir.metric("weir_buffer_size_bytes", &[("component_id", "es")]);
    assert!(buffered <= 4_000_000.0, "sink buffer holds {buffered}");
    assert_eq!(es.state().doc_count(), 0);
    assert!(weir.metric("weir_sink_in_flight_requests", &[("component_id", "es")]) == 2.0);
}

#[test]
fn sink_config_errors_are_located_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.toml");
    std::fs::write(
        &path,
        r#"[sources.in]
type = "stdin"
[sinks.es]
type = "elasticsearch"
inputs = ["in"]
endpoints = ["localhost:9200"]
index = "logs-{{ service.name"
[sinks.es2]
type = "elasticsearch"
inputs = ["in"]
endpoints = ["http://es:9200"]
request.concurrency = "fast"
[sinks.loki]
type = "loki"
inputs = ["in"]
endpoint = "http://loki:3100"
labels."bad-name" = "x"
batch.max_events = 0
"#,
    )
    .unwrap();
    let (code, out) = crate::support::validate(&[&path]);
    assert_eq!(code, 1, "{out}");
    for expected in [
        "pipeline.toml:6:1: sinks.es: `localhost:9200` is not an http:// or https:// URL",
        "pipeline.toml:7:1: sinks.es: unterminated `{{`",
        "pipeline.toml:12:23: sinks.es2: unknown concurrency \"fast\"",
        "pipeline.toml:17:1: sinks.loki: label name `bad-name` is not valid in Loki",
        "pipeline.toml:18:7: sinks.loki: batch.max_events must be at least 1",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
}

#[test]
fn a_quiet_input_sends_its_last_events_without_waiting_for_the_batch_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start();
    let ids = write_input(dir.path(), 5, None);
    // A batch timeout of an hour: only the idle flush can send five events that do not fill
    // a batch, while the file source keeps tailing (its input never closes).
    let p = pipeline(&[es.url()], "id_key = \"id\"").replace(
        "batch.timeout_secs = 0.2",
        "batch.timeout_secs = 3600\nbatch.idle_timeout_secs = 0.1",
    );
    let weir = Weir::start(dir.path(), &p);
    let counts = wait_for_docs(&es, &weir, ids.len());
    assert_each_once(&counts, &ids);
    assert!(weir.stop().success());
}
