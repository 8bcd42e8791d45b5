//! The loki sink end to end: the real weir binary reads JSON lines of model-server logs,
//! parses them and their time, and pushes them to the Loki stand-in under each failure the
//! stand-in can inject. Entries are counted by id at the far end.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::loki_server::{Fault, LokiServer, LokiState};
use crate::support::{Weir, wait_for};

/// Appends `n` JSON lines (ids `{prefix}00000`..), their time `age` before now, to
/// `dir/input.log`; returns the ids.
fn append_input(
    dir: &Path,
    prefix: &str,
    n: usize,
    age: chrono::Duration,
    extra: impl Fn(usize) -> String,
) -> Vec<String> {
    let ts = (chrono::Utc::now() - age).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut out = String::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}{i:05}");
        out.push_str(&format!(
            r#"{{"id":"{id}","ts":"{ts}","message":"POST /v2/models/resnet/infer 200 {i}ms","log":{{"level":"{}"}},"model":{{"version":"{}"}}{}}}"#,
            if i % 5 == 0 { "error" } else { "info" },
            i % 3,
            extra(i)
        ));
        out.push('\n');
        ids.push(id);
    }
    let mut f =
        std::fs::OpenOptions::new().create(true).append(true).open(dir.join("input.log")).unwrap();
    f.write_all(out.as_bytes()).unwrap();
    ids
}

fn pipeline(url: &str, extra: &str) -> String {
    format!(
        r#"
[sources.in]
type = "file"
include = ["{{{{dir}}}}/input.log"]

[transforms.parsed]
type = "parse_json"
inputs = ["in"]

[transforms.timed]
type = "parse_timestamp"
inputs = ["parsed"]
field = "ts"
formats = ["rfc3339"]

[sinks.loki]
type = "loki"
inputs = ["timed"]
endpoint = "{url}"
batch.max_events = 300
batch.timeout_secs = 0.2
request.retry_initial_backoff_secs = 0.02
request.retry_max_duration_secs = 0.3
request.timeout_secs = 5
{extra}
"#
    )
}

fn wait_for_entries(loki: &LokiServer, weir: &Weir, n: usize) {
    let ok = wait_for(Duration::from_secs(60), || loki.state().accepted.len() >= n);
    assert!(
        ok,
        "the stand-in accepted {} entries, expected {n}; stderr:\n{}",
        loki.state().accepted.len(),
        weir.stderr()
    );
}

fn assert_each_once(counts: &HashMap<String, usize>, ids: &[String]) {
    let missing = ids.iter().filter(|id| !counts.contains_key(*id)).count();
    assert_eq!(missing, 0, "{missing} ids lost");
    let dup = counts.values().filter(|c| **c > 1).count();
    assert_eq!(dup, 0, "{dup} ids duplicated");
}

#[test]
fn protobuf_push_with_labels_metadata_and_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let loki = LokiServer::start_with(LokiState { require_tenant: true, ..LokiState::default() });
    let ids = append_input(dir.path(), "p", 2000, chrono::Duration::zero(), |_| String::new());
    let weir = Weir::start(
        dir.path(),
        &pipeline(
            &loki.url(),
            "tenant_id = \"ml-platform\"\nlabels.job = \"weir\"\nlabels.level = \"{{ log.level }}\"\n\
             structured_metadata.model_version = \"{{ model.version }}\"\nremove_label_fields = true",
        ),
    );
    wait_for_entries(&loki, &weir, ids.len());
    let st = loki.state();
    assert_each_once(&st.count_by_line_field("id"), &ids);
    assert!(st.protobuf_pushes > 0 && st.protobuf_pushes == st.pushes);
    let streams = st.streams();
    assert_eq!(streams.len(), 2, "{streams:?}");
    let a = &st.accepted[0];
    assert_eq!(a.tenant.as_deref(), Some("ml-platform"));
    assert_eq!(a.labels["job"], "weir");
    assert!(a.metadata.contains_key("model_version"));
    // The level is a label, so it left the line; the time is the event's.
    assert!(!a.line.contains("\"level\""), "{}", a.line);
    let age = chrono::Utc::now().timestamp_nanos_opt().unwrap() - a.ts_ns;
    assert!((0..120_000_000_000).contains(&age), "entry time {} ns old", age);
    drop(st);
    assert!(weir.stderr().contains("health check: Loki is ready"));
    assert!(weir.stop().success());
}

#[test]
fn json_push_and_text_lines() {
    let dir = tempfile::tempdir().unwrap();
    let loki = LokiServer::start();
    let ids = append_input(dir.path(), "j", 500, chrono::Duration::zero(), |_| String::new());
    let weir = Weir::start(
        dir.path(),
        &pipeline(
            &loki.url(),
            "format = \"json\"\nlabels.job = \"weir\"\nstructured_metadata.id = \"{{ id }}\"\nencoding.codec = \"text\"",
        ),
    );
    wait_for_entries(&loki, &weir, ids.len());
    let st = loki.state();
    let mut counts = HashMap::new();
    for a in &st.accepted {
        *counts.entry(a.metadata["id"].clone()).or_insert(0) += 1;
        assert!(a.line.starts_with("POST /v2/models/resnet/infer 200"), "{}", a.line);
    }
    assert_each_once(&counts, &ids);
    assert_eq!(st.protobuf_pushes, 0);
    drop(st);
    assert!(weir.stop().success());
}

#[test]
fn throttling_errors_and_resets_are_retried_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = LokiState::default();
    state.faults.extend([
        Fault::Status(429),
        Fault::Status(500),
        Fault::Reset,
        Fault::Status(503),
        Fault::Delay(Duration::from_millis(300)),
        Fault::Status(429),
    ]);
    let loki = LokiServer::start_with(state);
    let ids = append_input(dir.path(), "r", 1500, chrono::Duration::zero(), |_| String::new());
    let weir = Weir::start(dir.path(), &pipeline(&loki.url(), "labels.job = \"weir\""));
    wait_for_entries(&loki, &weir, ids.len());
    assert_each_once(&loki.state().count_by_line_field("id"), &ids);
    assert!(weir.metric("weir_sink_retries_total", &[("component_id", "loki")]) >= 5.0);
    assert_eq!(
        weir.metric("weir_sink_requests_total", &[("component_id", "loki"), ("status", "429")]),
        2.0
    );
    assert!(weir.stop().success());
}

#[test]
fn entries_too_far_behind_are_counted_not_resent() {
    let dir = tempfile::tempdir().unwrap();
    let loki = LokiServer::start();
    let fresh = append_input(dir.path(), "f", 300, chrono::Duration::zero(), |_| String::new());
    let weir = Weir::start(dir.path(), &pipeline(&loki.url(), "labels.job = \"weir\""));
    wait_for_entries(&loki, &weir, fresh.len());
    // Three hours older than what the stream already holds: outside Loki's window.
    let old = append_input(dir.path(), "o", 250, chrono::Duration::hours(3), |_| String::new());
    let rejected = |w: &Weir| {
        w.metric(
            "weir_sink_rejected_events_total",
            &[("component_id", "loki"), ("reason", "entry_too_far_behind")],
        )
    };
    assert!(
        wait_for(Duration::from_secs(30), || rejected(&weir) == old.len() as f64),
        "rejected {}; stderr:\n{}",
        rejected(&weir),
        weir.stderr()
    );
    let st = loki.state();
    assert_eq!(st.accepted.len(), fresh.len(), "an old entry was accepted");
    // Each 400 was final: no push was repeated for the old entries.
    let pushes = st.pushes;
    drop(st);
    assert!(wait_for(Duration::from_secs(30), || weir.stderr().contains("entry too far behind")));
    assert_eq!(loki.state().pushes, pushes);
    assert!(weir.stop().success());
}

#[test]
fn exploding_label_sets_are_capped_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let loki = LokiServer::start();
    let ids = append_input(dir.path(), "c", 400, chrono::Duration::zero(), |_| String::new());
    let weir = Weir::start(
        dir.path(),
        &pipeline(
            &loki.url(),
            "labels.job = \"weir\"\nlabels.request_id = \"{{ id }}\"\nmax_streams = 50",
        ),
    );
    wait_for_entries(&loki, &weir, ids.len());
    let st = loki.state();
    assert_each_once(&st.count_by_line_field("id"), &ids);
    let streams = st.streams();
    assert_eq!(streams.len(), 51, "50 streams and the capped one");
    let capped: Vec<_> =
        st.accepted.iter().filter(|a| a.labels.contains_key("weir_cardinality_capped")).collect();
    assert_eq!(capped.len(), 350);
    assert!(capped.iter().all(|a| a.metadata.contains_key("request_id")));
    drop(st);
    let log = weir.stderr();
    assert_eq!(log.matches("more distinct label sets than max_streams").count(), 1, "{log}");
    assert!(log.contains("label `request_id` has the most values"), "{log}");
    assert_eq!(
        weir.metric(
            "weir_component_errors_total",
            &[("component_id", "loki"), ("error_type", "stream_cardinality_capped")]
        ),
        350.0
    );
    assert!(weir.stop().success());
}

#[test]
fn label_sets_breaking_loki_rules_are_rejected_before_sending() {
    let dir = tempfile::tempdir().unwrap();
    let loki = LokiServer::start();
    // Every tenth event carries 20 pod labels: 21 labels with `job`, more than Loki's 15.
    let ids = append_input(dir.path(), "l", 300, chrono::Duration::zero(), |i| {
        if i % 10 == 0 {
            let labels: Vec<String> = (0..20).map(|k| format!("\"label.{k}\":\"v\"")).collect();
            format!(",\"pod\":{{{}}}", labels.join(","))
        } else {
            String::new()
        }
    });
    let weir = Weir::start(
        dir.path(),
        &pipeline(&loki.url(), "labels.job = \"weir\"\nlabels.\"pod_*\" = \"{{ pod }}\""),
    );
    wait_for_entries(&loki, &weir, 270);
    let rejected = |w: &Weir| {
        w.metric(
            "weir_sink_rejected_events_total",
            &[("component_id", "loki"), ("reason", "too_many_labels")],
        )
    };
    assert!(
        wait_for(Duration::from_secs(60), || rejected(&weir) == 30.0),
        "rejected {}",
        rejected(&weir)
    );
    let good: Vec<String> =
        ids.iter().enumerate().filter(|(i, _)| i % 10 != 0).map(|(_, id)| id.clone()).collect();
    assert_each_once(&loki.state().count_by_line_field("id"), &good);
    assert!(weir.stderr().contains("too_many_labels"));
    assert!(weir.stop().success());
}
