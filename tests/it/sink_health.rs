//! A sink never stops for good while weir runs, and `/health` says how it is doing: whole
//! requests refused (400, 404) send their events to the dead-letter destination and the sink
//! goes on; refused credentials (401) are retried until they are accepted, with `/health`
//! answering 503 naming the sink meanwhile; a component that cannot go on makes weir exit
//! non-zero. Against the Elasticsearch and Loki stand-ins, which answer scripted statuses with
//! the bodies their servers write.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::es_server::{EsServer, EsState, Fault};
use crate::loki_server::{self, LokiServer, LokiState};
use crate::support::{Weir, read_lines, wait_for};

const LONG: Duration = Duration::from_secs(120);

/// `elastic:right`, as the `Authorization` header of basic authentication.
const RIGHT: &str = "Basic ZWxhc3RpYzpyaWdodA==";
/// `elastic:wrong`.
const WRONG: &str = "Basic ZWxhc3RpYzp3cm9uZw==";

/// Writes `n` JSON lines with ids `{prefix}00000`.. to `dir/input.log`; returns the ids and the
/// file's length.
fn write_input(dir: &Path, prefix: &str, n: usize) -> (Vec<String>, u64) {
    let mut out = String::with_capacity(n * 120);
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("{prefix}{i:05}");
        out.push_str(&format!(
            r#"{{"id":"{id}","message":"POST /v2/models/resnet/infer HTTP/1.1 200 {}ms","service":{{"name":"triton"}}}}"#,
            i % 900
        ));
        out.push('\n');
        ids.push(id);
    }
    std::fs::File::create(dir.join("input.log")).unwrap().write_all(out.as_bytes()).unwrap();
    (ids, out.len() as u64)
}

/// A file source reading `dir/input.log`, parsed as JSON, into the sink `sink` (TOML).
fn pipeline(sink: &str) -> String {
    format!(
        r#"
[sources.in]
type = "file"
include = ["{{{{dir}}}}/input.log"]

[transforms.parsed]
type = "parse_json"
inputs = ["in"]
{sink}
"#
    )
}

/// An Elasticsearch sink quick to retry, with `_id` from the event's `id`.
fn es_sink(url: &str, extra: &str) -> String {
    format!(
        r#"
[sinks.es]
type = "elasticsearch"
inputs = ["parsed"]
endpoints = ["{url}"]
index = "weir"
id_key = "id"
batch.max_events = 500
batch.timeout_secs = 0.2
request.retry_initial_backoff_secs = 0.02
request.retry_max_duration_secs = 0.2
request.timeout_secs = 5
{extra}
"#
    )
}

fn loki_sink(url: &str, extra: &str) -> String {
    format!(
        r#"
[sinks.loki]
type = "loki"
inputs = ["parsed"]
endpoint = "{url}"
labels.job = "weir"
batch.max_events = 300
batch.timeout_secs = 0.2
request.retry_initial_backoff_secs = 0.02
request.retry_max_duration_secs = 0.2
request.timeout_secs = 5
{extra}
"#
    )
}

/// Every dead letter written to the default file so far.
fn dead_letters(dir: &Path) -> Vec<serde_json::Value> {
    let Ok(entries) = std::fs::read_dir(dir.join("data/dead_letter")) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .flat_map(|e| read_lines(&e.path()))
        .map(|l| serde_json::from_str(&l).expect("dead letters are JSON lines"))
        .collect()
}

/// The `id` of the event a dead letter holds.
fn letter_id(letter: &serde_json::Value) -> String {
    let original = letter["event"]["original"].as_str().expect("event.original");
    let v: serde_json::Value = serde_json::from_str(original).expect("the original is JSON");
    v["id"].as_str().expect("an id").to_string()
}

/// The file source's saved position in `input.log`.
fn checkpoint(dir: &Path) -> u64 {
    let text = std::fs::read_to_string(dir.join("data/in/checkpoints.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["checkpoints"]
        .as_array()
        .and_then(|a| a.iter().find_map(|c| c["offset"].as_u64()))
        .unwrap_or(0)
}

/// Whether `/health` answers 503 naming `component` among the unhealthy, with a reason that
/// contains `reason`.
fn unhealthy(weir: &Weir, component: &str, reason: &str) -> bool {
    let (status, body) = weir.health();
    status == 503
        && body["unhealthy"].as_array().is_some_and(|a| a.iter().any(|c| c == component))
        && body["components"][component]["state"] == "unhealthy"
        && body["components"][component]["reason"].as_str().is_some_and(|r| r.contains(reason))
}

fn healthy(weir: &Weir) -> bool {
    let (status, body) = weir.health();
    status == 200 && body["status"] == "ok"
}

#[test]
fn a_whole_request_404_dead_letters_that_request_and_the_sink_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut state =
        EsState { keep_docs: false, track_field: Some("id".into()), ..Default::default() };
    state.faults.push_back(Fault::Status(404));
    let es = EsServer::start_with(state);
    let (ids, len) = write_input(dir.path(), "n", 20_000);
    let mut weir = Weir::start(dir.path(), &pipeline(&es_sink(&es.url(), "")));
    let settled = wait_for(LONG, || {
        es.state().tracked.len() + dead_letters(dir.path()).len() >= ids.len()
            && checkpoint(dir.path()) == len
    });
    assert!(
        settled,
        "{} stored, {} dead letters, checkpoint {} of {len}; stderr:\n{}",
        es.state().tracked.len(),
        dead_letters(dir.path()).len(),
        checkpoint(dir.path()),
        weir.stderr()
    );
    // The refused request's events, and only they, are dead letters: one batch.
    let letters = dead_letters(dir.path());
    assert!((1..=500).contains(&letters.len()), "{} dead letters", letters.len());
    let refused: HashSet<String> = letters.iter().map(letter_id).collect();
    assert_eq!(refused.len(), letters.len());
    for l in &letters {
        assert_eq!(l["error"]["type"], "http_404", "{l}");
        assert_eq!(
            l["error"]["message"],
            "HTTP 404: index_not_found_exception: no such index [weir] and \
             [action.auto_create_index] is [false]",
            "{l}"
        );
        assert_eq!(l["weir"]["dead_letter"]["sink"], "es");
    }
    // Every other event was stored once; none was both stored and dead-lettered.
    let st = es.state();
    for id in &ids {
        let stored = st.tracked.get(id).map_or(0, |(n, _)| *n);
        assert_eq!(stored + usize::from(refused.contains(id)), 1, "event {id}");
    }
    drop(st);
    assert!(weir.running(), "weir exited; stderr:\n{}", weir.stderr());
    assert!(wait_for(LONG, || healthy(&weir)), "{:?}", weir.health());
    assert_eq!(
        weir.metric(
            "weir_dead_letter_events_total",
            &[("component_id", "es"), ("reason", "http_404")]
        ),
        letters.len() as f64
    );
    assert!(weir.stop().success());
}

#[test]
fn a_whole_request_400_dead_letters_its_events_with_the_status_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = EsState::default();
    state.faults.extend([Fault::Status(400), Fault::Status(400)]);
    let es = EsServer::start_with(state);
    let (ids, _) = write_input(dir.path(), "b", 3000);
    let mut weir = Weir::start(dir.path(), &pipeline(&es_sink(&es.url(), "")));
    assert!(
        wait_for(LONG, || es.state().doc_count() + dead_letters(dir.path()).len() >= ids.len()),
        "{} stored, {} dead letters; stderr:\n{}",
        es.state().doc_count(),
        dead_letters(dir.path()).len(),
        weir.stderr()
    );
    let letters = dead_letters(dir.path());
    assert!((2..=1000).contains(&letters.len()), "{} dead letters of two requests", letters.len());
    for l in &letters {
        assert_eq!(l["error"]["type"], "http_400", "{l}");
        assert_eq!(
            l["error"]["message"],
            "HTTP 400: illegal_argument_exception: request [/_bulk] contains unrecognized \
             parameter: [pipline]",
            "{l}"
        );
        assert_eq!(l["weir"]["dead_letter"]["destination"], "weir");
    }
    let stored: HashSet<String> = es.state().count_by("id").into_keys().collect();
    let refused: HashSet<String> = letters.iter().map(letter_id).collect();
    assert!(stored.is_disjoint(&refused));
    assert_eq!(stored.len() + refused.len(), ids.len());
    let log = weir.stderr();
    assert!(log.contains("contains unrecognized parameter"), "{log}");
    assert!(weir.running());
    assert!(weir.stop().success());
}

#[test]
fn refused_credentials_are_retried_and_health_says_so_until_they_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let es =
        EsServer::start_with(EsState { credentials: Some(RIGHT.into()), ..EsState::default() });
    let (ids, len) = write_input(dir.path(), "a", 2000);
    let auth = "auth.strategy = \"basic\"\nauth.user = \"elastic\"\nauth.password = \"wrong\"";
    let mut weir = Weir::start(dir.path(), &pipeline(&es_sink(&es.url(), auth)));
    assert!(
        wait_for(LONG, || unhealthy(&weir, "sinks.es", "refused the credentials")),
        "{:?}; stderr:\n{}",
        weir.health(),
        weir.stderr()
    );
    // It keeps trying, and keeps running.
    let refusals = |w: &Weir| {
        w.metric("weir_sink_requests_total", &[("component_id", "es"), ("status", "401")])
    };
    assert!(wait_for(LONG, || refusals(&weir) >= 10.0), "{} refusals", refusals(&weir));
    assert!(weir.running(), "weir exited; stderr:\n{}", weir.stderr());
    assert!(unhealthy(&weir, "sinks.es", "HTTP 401"));
    let (_, body) = weir.health();
    assert_eq!(body["components"]["sources.in"]["state"], "healthy", "{body}");
    assert_eq!(weir.metric("weir_component_healthy", &[("component_id", "es")]), 0.0);
    let log = weir.stderr();
    assert!(
        log.contains("ERROR") && log.contains("Elasticsearch refused the credentials"),
        "{log}"
    );
    // The ERROR is rate-limited: far fewer lines than refusals.
    let lines = log.lines().filter(|l| l.contains("the sink is unhealthy and sends again")).count();
    assert!(lines >= 1 && (lines as f64) < refusals(&weir) / 2.0, "{lines} lines");
    assert_eq!(es.state().doc_count(), 0);
    assert_eq!(checkpoint(dir.path()), 0);

    // The cluster is given the credentials weir has: everything arrives, once.
    es.state().credentials = Some(WRONG.into());
    assert!(
        wait_for(LONG, || es.state().doc_count() >= ids.len() && checkpoint(dir.path()) == len),
        "{} stored; stderr:\n{}",
        es.state().doc_count(),
        weir.stderr()
    );
    assert_eq!(es.state().count_by("id").len(), ids.len());
    assert!(wait_for(LONG, || healthy(&weir)), "{:?}", weir.health());
    assert_eq!(weir.metric("weir_component_healthy", &[("component_id", "es")]), 1.0);
    assert!(dead_letters(dir.path()).is_empty());
    assert!(weir.stop().success());
}

#[test]
fn refused_credentials_do_not_end_a_demo_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let es =
        EsServer::start_with(EsState { credentials: Some(RIGHT.into()), ..EsState::default() });
    let sink = es_sink(
        &es.url(),
        "auth.strategy = \"basic\"\nauth.user = \"elastic\"\nauth.password = \"wrong\"",
    )
    .replace("inputs = [\"parsed\"]", "inputs = [\"demo\"]")
    .replace("id_key = \"id\"\n", "");
    let mut weir = Weir::start(
        dir.path(),
        &format!("[sources.demo]\ntype = \"demo\"\ninterval_ms = 1\n{sink}"),
    );
    let refusals = |w: &Weir| {
        w.metric("weir_sink_requests_total", &[("component_id", "es"), ("status", "401")])
    };
    assert!(
        wait_for(LONG, || refusals(&weir) >= 10.0 && unhealthy(&weir, "sinks.es", "HTTP 401")),
        "{} refusals, {:?}; stderr:\n{}",
        refusals(&weir),
        weir.health(),
        weir.stderr()
    );
    assert!(weir.running(), "weir exited; stderr:\n{}", weir.stderr());
    assert!(!weir.stderr().contains("weir stopped"));
    // Stopping ends the retries at once: the events were not delivered, so the exit is not 0.
    let status = weir.stop();
    assert_eq!(status.code(), Some(1), "{status:?}");
}

#[test]
fn loki_whole_request_400_and_404_dead_letter_their_entries_and_the_sink_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = LokiState::default();
    state.faults.extend([loki_server::Fault::Status(404), loki_server::Fault::Status(400)]);
    let loki = LokiServer::start_with(state);
    let (ids, len) = write_input(dir.path(), "l", 3000);
    let mut weir = Weir::start(dir.path(), &pipeline(&loki_sink(&loki.url(), "")));
    assert!(
        wait_for(LONG, || {
            loki.state().accepted.len() + dead_letters(dir.path()).len() >= ids.len()
                && checkpoint(dir.path()) == len
        }),
        "{} accepted, {} dead letters; stderr:\n{}",
        loki.state().accepted.len(),
        dead_letters(dir.path()).len(),
        weir.stderr()
    );
    let letters = dead_letters(dir.path());
    let by_type = |t: &str| letters.iter().filter(|l| l["error"]["type"] == t).count();
    let (not_found, bad) = (by_type("http_404"), by_type("http_400"));
    assert!((1..=300).contains(&not_found) && (1..=300).contains(&bad), "{not_found} {bad}");
    assert_eq!(not_found + bad, letters.len());
    for l in &letters {
        let expected = if l["error"]["type"] == "http_404" {
            "HTTP 404: 404 page not found"
        } else {
            "HTTP 400: error at least one label pair is required per stream"
        };
        assert_eq!(l["error"]["message"], expected, "{l}");
        assert_eq!(l["weir"]["dead_letter"]["sink_type"], "loki");
    }
    let accepted: HashSet<String> = loki.state().count_by_line_field("id").into_keys().collect();
    let refused: HashSet<String> = letters.iter().map(letter_id).collect();
    assert!(accepted.is_disjoint(&refused));
    assert_eq!(accepted.len() + refused.len(), ids.len());
    assert!(weir.running());
    assert!(wait_for(LONG, || healthy(&weir)), "{:?}", weir.health());
    assert!(weir.stop().success());
}

#[test]
fn loki_refusing_the_tenant_is_unhealthy_and_a_stop_keeps_the_entries_for_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let loki = LokiServer::start_with(LokiState { require_tenant: true, ..LokiState::default() });
    let (ids, _) = write_input(dir.path(), "t", 500);
    // A shutdown deadline far beyond the bound below, so that a stop waiting out the retries
    // cannot pass for one that does not.
    let stopping =
        format!("shutdown_timeout_secs = 300\n{}", pipeline(&loki_sink(&loki.url(), "")));
    let mut weir = Weir::start(dir.path(), &stopping);
    assert!(
        wait_for(LONG, || unhealthy(&weir, "sinks.loki", "no org id")),
        "{:?}; stderr:\n{}",
        weir.health(),
        weir.stderr()
    );
    assert!(weir.running());
    // A stop does not wait out the retries: weir exits at once, non-zero, and the entries
    // wait for the next run.
    let started = std::time::Instant::now();
    let status = weir.stop();
    assert_eq!(status.code(), Some(1), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(50), "{:?}", started.elapsed());
    assert_eq!(loki.state().accepted.len(), 0);
    let weir = Weir::start(dir.path(), &pipeline(&loki_sink(&loki.url(), "tenant_id = \"ml\"")));
    assert!(
        wait_for(LONG, || loki.state().accepted.len() >= ids.len()),
        "{} accepted; stderr:\n{}",
        loki.state().accepted.len(),
        weir.stderr()
    );
    assert_eq!(loki.state().count_by_line_field("id").len(), ids.len());
    assert!(wait_for(LONG, || healthy(&weir)), "{:?}", weir.health());
    assert!(weir.stop().success());
}
