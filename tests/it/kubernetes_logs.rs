//! The `kubernetes_logs` source on pod log trees laid out as the kubelet lays them out:
//! `<pods_dir>/<namespace>_<pod>_<uid>/<container>/<restart count>.log`, written in the CRI
//! format (containerd, CRI-O) or Docker's `json-file`, rotated by renaming `0.log` to
//! `0.log.<YYYYMMDD-hhmmss>` and compressing older rotations to `.gz` (the kubelet's
//! container log manager, `pkg/kubelet/logs/container_log_manager.go`).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{Weir, read_lines, wait_for};

const TIMEOUT: Duration = Duration::from_secs(90);
const UID: &str = "3f1c9a52-5a3e-4c1b-9d7e-0a1b2c3d4e5f";

/// kubernetes_logs (on `dir/pods`) -> `transform` (when given) -> JSON lines in `dir/out.log`.
fn pipeline(extra: &str, transform: Option<&str>) -> String {
    let (input, transform) = match transform {
        Some(t) => ("t", format!("[transforms.t]\ninputs = [\"k8s\"]\n{t}\n")),
        None => ("k8s", String::new()),
    };
    format!(
        r#"
[sources.k8s]
type = "kubernetes_logs"
pods_dir = "{{{{dir}}}}/pods"
glob_interval_ms = 50
rotate_wait_ms = 1000
{extra}

{transform}
[sinks.out]
type = "file"
inputs = ["{input}"]
path = "{{{{dir}}}}/out.log"
encoding.codec = "json"
"#
    )
}

fn container_dir(dir: &Path, namespace: &str, pod: &str, container: &str) -> PathBuf {
    let d = dir.join("pods").join(format!("{namespace}_{pod}_{UID}")).join(container);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new().create(true).append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn events(out: &Path) -> Vec<serde_json::Value> {
    read_lines(out).iter().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn wait_events(weir: &Weir, out: &Path, n: usize) -> Vec<serde_json::Value> {
    let ok = wait_for(TIMEOUT, || read_lines(out).len() >= n);
    assert!(ok, "only {} of {n} events arrived; stderr:\n{}", read_lines(out).len(), weir.stderr());
    events(out)
}

/// A CRI record: `<time> <stream> <tag> <message>`.
fn cri(second: usize, stream: &str, tag: &str, message: &str) -> String {
    format!(
        "2024-05-01T10:{:02}:{:02}.{:09}Z {stream} {tag} {message}\n",
        second / 60 % 60,
        second % 60,
        second
    )
}

#[test]
fn partial_lines_are_joined_with_fields_from_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let cri_dir = container_dir(dir.path(), "serving", "vllm-0", "vllm");
    // containerd splits a long line into P parts and an F part; stdout and stderr interleave.
    let long = "x".repeat(40_000);
    let mut text = cri(1, "stdout", "P", &long[..16384]);
    text += &cri(2, "stderr", "F", "WARNING a warning between the parts");
    text += &cri(3, "stdout", "P", &long[16384..32768]);
    text += &cri(4, "stdout", "F", &long[32768..]);
    text += &cri(5, "stdout", "F", "");
    append(&cri_dir.join("0.log"), &text);
    // Docker json-file (cri-dockerd): a log without its newline is a part.
    let docker_dir = container_dir(dir.path(), "serving", "torchserve-0", "torchserve");
    append(
        &docker_dir.join("1.log"),
        concat!(
            r#"{"log":"2024-05-01T10:00:00,000 [INFO ] W-9000 - a long","stream":"stdout","time":"2024-05-01T10:00:00.000000001Z"}"#,
            "\n",
            r#"{"log":" line\n","stream":"stdout","time":"2024-05-01T10:00:00.5Z"}"#,
            "\n",
            r#"{"log":"oops\n","stream":"stderr","time":"2024-05-01T10:00:01Z"}"#,
            "\n"
        ),
    );
    // What the kubelet leaves beside a live file: never read.
    append(&cri_dir.join("0.log.20240501-095959"), &cri(0, "stdout", "F", "rotated"));
    append(&cri_dir.join("0.log.20240501-090000.gz"), &cri(0, "stdout", "F", "compressed"));
    // Excluded by namespace and by container.
    append(
        &container_dir(dir.path(), "kube-system", "coredns-1", "coredns").join("0.log"),
        &cri(0, "stdout", "F", "excluded"),
    );
    append(
        &container_dir(dir.path(), "serving", "vllm-0", "istio-proxy").join("0.log"),
        &cri(0, "stdout", "F", "excluded"),
    );
    // Read after every other file (paths are read in order): when it is there, all are.
    let last = container_dir(dir.path(), "zz", "last-0", "last");
    append(&last.join("0.log"), &cri(9, "stdout", "F", "last"));

    let extra = "exclude_namespaces = [\"kube-*\"]\nexclude_containers = [\"istio-*\"]";
    let weir = Weir::start(dir.path(), &pipeline(extra, None));
    let out = dir.path().join("out.log");
    let ok = wait_for(TIMEOUT, || events(&out).iter().any(|e| e["message"] == "last"));
    assert!(ok, "stderr:\n{}", weir.stderr());
    assert!(weir.stop().success());
    let got = events(&out);
    let messages: Vec<&str> = got.iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(
        messages,
        [
            "2024-05-01T10:00:00,000 [INFO ] W-9000 - a long line",
            "oops",
            "WARNING a warning between the parts",
            long.as_str(),
            "last",
        ]
    );
    let joined = &got[3];
    assert_eq!(joined["@timestamp"], "2024-05-01T10:00:01.000000001Z", "the first part's time");
    assert_eq!(joined["stream"], "stdout");
    assert_eq!(
        joined["kubernetes"],
        serde_json::json!({"namespace": "serving", "pod": {"name": "vllm-0", "uid": UID},
            "container": {"name": "vllm"}})
    );
    assert_eq!(joined["log"]["file"]["path"], cri_dir.join("0.log").display().to_string());
    assert!(joined.get("error").is_none());
    assert_eq!(got[2]["stream"], "stderr");
    assert_eq!(got[0]["@timestamp"], "2024-05-01T10:00:00.000000001Z");
    assert_eq!(got[1]["stream"], "stderr");
    assert_eq!(got[0]["kubernetes"]["container"]["name"], "torchserve");
}

/// Lines of the model servers in `tests/data/model-servers`, first `n` of each file.
fn model_lines(n: usize) -> Vec<String> {
    let data = crate::support::test_data().join("model-servers");
    let mut lines = Vec::new();
    for f in ["kserve_container.log", "vllm.log", "triton_verbose.log", "torchserve_access.log"] {
        let text = std::fs::read_to_string(data.join(f)).unwrap();
        lines.extend(text.lines().filter(|l| !l.trim().is_empty()).take(n).map(String::from));
    }
    lines
}

/// The fields a parser gave, without those of the source.
fn parsed(mut e: serde_json::Value) -> serde_json::Value {
    let m = e.as_object_mut().unwrap();
    for k in ["host", "kubernetes", "stream", "@timestamp"] {
        m.remove(k);
    }
    if let Some(log) = m.get_mut("log").and_then(|l| l.as_object_mut()) {
        log.remove("file");
        if log.is_empty() {
            m.remove("log");
        }
    }
    e
}

#[test]
fn parse_model_log_reads_the_message_as_it_reads_a_plain_line() {
    let dir = tempfile::tempdir().unwrap();
    let lines = model_lines(15);
    // Each line as containerd writes it; every third split into a P and an F part.
    let mut text = String::new();
    for (i, l) in lines.iter().enumerate() {
        let cut = l.len() / 2;
        if i.is_multiple_of(3) && l.is_char_boundary(cut) {
            text += &cri(i, "stdout", "P", &l[..cut]);
            text += &cri(i, "stdout", "F", &l[cut..]);
        } else {
            text += &cri(i, "stderr", "F", l);
        }
    }
    append(&container_dir(dir.path(), "models", "server-0", "server").join("0.log"), &text);
    let transform = "type = \"parse_model_log\"\ntimezone = \"UTC\"";
    let weir = Weir::start(dir.path(), &pipeline("", Some(transform)));
    let got = wait_events(&weir, &dir.path().join("out.log"), lines.len());
    assert!(weir.stop().success());
    let plain_dir = dir.path().join("plain");
    std::fs::create_dir(&plain_dir).unwrap();
    let plain = crate::model_lines::parse_model_lines(&plain_dir, &(lines.join("\n") + "\n"));
    assert_eq!(got.len(), plain.len());
    let mut parsed_any = 0;
    for (k, p) in got.into_iter().zip(plain) {
        assert_eq!(k["kubernetes"]["pod"]["name"], "server-0");
        parsed_any += usize::from(p.get("error").is_none());
        assert_eq!(parsed(k), parsed(p));
    }
    assert!(
        parsed_any > lines.len() / 2,
        "most lines are parsed ({parsed_any} of {})",
        lines.len()
    );
}

/// How many times each id (`id=NNNNNNN`) arrived, and the messages that were not whole.
fn counts(events: &[serde_json::Value]) -> (BTreeMap<usize, usize>, Vec<String>) {
    let (mut c, mut broken) = (BTreeMap::new(), Vec::new());
    for e in events {
        let m = e["message"].as_str().unwrap_or_default();
        let id = m.strip_prefix("id=").and_then(|r| r.get(..7)).and_then(|d| d.parse().ok());
        match id {
            Some(id) if *m == record(id) => *c.entry(id).or_insert(0) += 1,
            _ => broken.push(m.chars().take(80).collect()),
        }
    }
    (c, broken)
}

/// Record `id`'s message: long enough for every fifth to be written in parts.
fn record(id: usize) -> String {
    let len = if id.is_multiple_of(5) { 300 } else { 60 };
    format!("id={id:07} {}", "y".repeat(len))
}

/// Appends records `ids` to `log` in the CRI format; every fifth in parts of 128 bytes.
fn write_records(log: &Path, ids: std::ops::Range<usize>) {
    let mut text = String::new();
    for id in ids {
        let r = record(id);
        let parts: Vec<&str> =
            if id.is_multiple_of(5) { vec![&r[..128], &r[128..256], &r[256..]] } else { vec![&r] };
        for (k, p) in parts.iter().enumerate() {
            let tag = if k + 1 == parts.len() { "F" } else { "P" };
            text += &cri(id, "stdout", tag, p);
        }
    }
    append(log, &text);
}

/// Rotates `dir/0.log` as the kubelet does: renamed to `0.log.<time>`, and the rotation before
/// it replaced by a `.gz` (here the same bytes under the `.gz` name, so that reading it would
/// repeat its lines).
fn rotate(dir: &Path, round: usize, previous: &mut Option<PathBuf>) {
    let rotated = dir.join(format!("0.log.20240501-1000{round:02}"));
    std::fs::rename(dir.join("0.log"), &rotated).unwrap();
    if let Some(p) = previous.take() {
        let gz = p.with_file_name(format!("{}.gz", p.file_name().unwrap().to_string_lossy()));
        std::fs::copy(&p, gz).unwrap();
        std::fs::remove_file(&p).unwrap();
    }
    *previous = Some(rotated);
}

fn assert_every_record(events: &[serde_json::Value], n: usize, once: bool) {
    let (c, broken) = counts(events);
    assert!(
        broken.is_empty(),
        "messages not whole (first 10): {:?}",
        &broken[..broken.len().min(10)]
    );
    let missing: Vec<usize> = (0..n).filter(|i| !c.contains_key(i)).take(10).collect();
    assert!(missing.is_empty(), "missing ids (first 10): {missing:?}");
    assert_eq!(c.len(), n, "unexpected ids arrived");
    if once {
        let repeated: Vec<_> = c.iter().filter(|(_, k)| **k > 1).take(10).collect();
        assert!(repeated.is_empty(), "repeated ids (first 10, with counts): {repeated:?}");
    }
}

#[test]
fn rotation_under_load_delivers_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let pods = [("serving", "triton-0", "triton"), ("serving", "vllm-0", "vllm")];
    let dirs: Vec<PathBuf> =
        pods.iter().map(|(n, p, c)| container_dir(dir.path(), n, p, c)).collect();
    let weir = Weir::start(dir.path(), &pipeline("", None));
    let (rounds, per_file) = (6, 1500);
    let mut previous = [None, None];
    let mut id = 0;
    for round in 0..rounds {
        for _ in 0..per_file / 100 {
            for d in &dirs {
                write_records(&d.join("0.log"), id..id + 50);
                id += 50;
            }
            // A steady writer, not a burst.
            std::thread::sleep(Duration::from_millis(10));
        }
        for (d, prev) in dirs.iter().zip(previous.iter_mut()) {
            rotate(d, round, prev);
        }
    }
    let got = wait_events(&weir, &dir.path().join("out.log"), id);
    assert!(weir.stop().success());
    assert_every_record(&got, id, true);
}

#[test]
fn kill_9_and_restart_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = container_dir(dir.path(), "serving", "bentoml-0", "bentoml");
    let log = d.join("0.log");
    let n = 100_000;
    write_records(&log, 0..n / 10);
    let writer = std::thread::spawn(move || {
        let mut from = n / 10;
        while from < n {
            let to = (from + 500).min(n);
            write_records(&log, from..to);
            from = to;
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let out = dir.path().join("out.log");
    let p = pipeline("", None);
    let weir = Weir::start(dir.path(), &p);
    wait_events(&weir, &out, 1);
    assert!(!weir.kill9().success());
    assert!(!writer.is_finished(), "the writer finished before the kill; proves nothing");
    writer.join().unwrap();
    // A kill can leave the sink's last line half written: only whole lines count.
    let whole = std::fs::read_to_string(&out).unwrap();
    let cut = whole.rfind('\n').map_or(0, |i| i + 1);
    std::fs::write(&out, &whole[..cut]).unwrap();

    let weir = Weir::start(dir.path(), &p);
    let ok = wait_for(TIMEOUT, || counts(&events(&out)).0.len() >= n);
    assert!(ok, "stderr:\n{}", weir.stderr());
    assert!(weir.stop().success());
    assert_every_record(&events(&out), n, false);
}

/// weir is killed (-9) while reading `0.log`; while it is down the container writes more,
/// the kubelet rotates `0.log` to `0.log.<time>` and the container writes a new `0.log`. The
/// restart finds the rotated file by its checkpoint and reads it from there to its end (the
/// records written after the kill included), then the new file from its start: every record
/// arrives. Records delivered after the last checkpoint come twice (at most), nothing else.
#[test]
fn rotated_while_killed_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = container_dir(dir.path(), "serving", "triton-0", "triton");
    let log = d.join("0.log");
    let (before_kill, old, n) = (20_000, 30_000, 50_000);
    write_records(&log, 0..before_kill);
    let out = dir.path().join("out.log");
    let p = pipeline("", None);
    let weir = Weir::start(dir.path(), &p);
    // Killed once a checkpoint names the file: a file never checkpointed is not known after
    // a restart under its rotated name (see `resume_rotated`).
    let checkpoints = dir.path().join("data/k8s/checkpoints.json");
    let named = wait_for(TIMEOUT, || {
        std::fs::read_to_string(&checkpoints).is_ok_and(|c| c.contains("triton/0.log"))
    });
    assert!(named, "no checkpoint written; stderr:\n{}", weir.stderr());
    assert!(!weir.kill9().success());
    write_records(&log, before_kill..old);
    // A kill can leave the sink's last line half written: only whole lines count.
    let whole = std::fs::read_to_string(&out).unwrap_or_default();
    let cut = whole.rfind('\n').map_or(0, |i| i + 1);
    std::fs::write(&out, &whole[..cut]).unwrap();
    let before = counts(&events(&out)).0;
    rotate(&d, 0, &mut None);
    write_records(&log, old..n);

    let weir = Weir::start(dir.path(), &p);
    let ok = wait_for(TIMEOUT, || counts(&events(&out)).0.len() >= n);
    assert!(ok, "stderr:\n{}", weir.stderr());
    assert!(weir.stop().success());
    let got = events(&out);
    assert_every_record(&got, n, false);
    let (c, _) = counts(&got);
    let repeated: Vec<usize> = c.iter().filter(|(_, k)| **k > 1).map(|(i, _)| *i).collect();
    assert!(c.values().all(|k| *k <= 2), "a record arrived more than twice");
    if let Some(first) = repeated.first() {
        let tail: Vec<usize> = before.keys().filter(|i| *i >= first).copied().collect();
        assert_eq!(repeated, tail, "the repeats are not exactly the killed run's last records");
    }
}

/// kubernetes_logs with the API stand-in of node `node-1`, its token in `dir/token`.
fn api_pipeline(api: &crate::kube_api_server::KubeApi, dir: &Path) -> String {
    std::fs::write(dir.join("token"), "token-1\n").unwrap();
    let extra = format!(
        "kube_api_endpoint = \"{}\"\nkube_token_file = \"{}\"\nself_node_name = \"node-1\"",
        api.url(),
        dir.join("token").display()
    );
    pipeline(&extra, None)
}

/// Appends one CRI line to the log of pod `pod` (uid `uid`), container `server`.
fn pod_line(dir: &Path, pod: &str, uid: &str, message: &str) {
    let d = dir.join("pods").join(format!("serving_{pod}_{uid}")).join("server");
    std::fs::create_dir_all(&d).unwrap();
    append(&d.join("0.log"), &cri(1, "stdout", "F", message));
}

/// Writes `message <n>` lines to a pod until one arrives enriched (`kubernetes.labels`), so
/// that the test knows the watch delivered what the API holds for it; returns that event.
fn until_enriched(weir: &Weir, out: &Path, pod: &str, uid: &str) -> serde_json::Value {
    let mut n = 0;
    let mut found = None;
    let ok = wait_for(TIMEOUT, || {
        n += 1;
        pod_line(weir.dir.as_path(), pod, uid, &format!("{pod} probe {n}"));
        found = events(out).into_iter().find(|e| {
            e["kubernetes"]["pod"]["uid"] == uid && e["kubernetes"]["labels"].is_object()
        });
        found.is_some()
    });
    assert!(ok, "{pod} was never enriched; stderr:\n{}", weir.stderr());
    found.unwrap()
}

#[test]
fn pod_metadata_from_the_api_stand_in() {
    use crate::kube_api_server::{KubeApi, pod};
    let dir = tempfile::tempdir().unwrap();
    let api = KubeApi::start("token-1");
    let labels = serde_json::json!({"app": "triton", "app.kubernetes.io/name": "triton"});
    api.change("ADDED", pod("a-0", "uid-a", "node-1", labels.clone()));
    api.change(
        "ADDED",
        pod("b-0", "uid-b", "node-1", serde_json::json!({"weir.io/exclude": "true"})),
    );
    api.change("ADDED", pod("c-0", "uid-c", "node-2", labels.clone()));
    let weir = Weir::start(dir.path(), &api_pipeline(&api, dir.path()));
    let out = dir.path().join("out.log");
    assert!(wait_for(TIMEOUT, || api.state().watches >= 1), "no watch; stderr:\n{}", weir.stderr());

    // Listed, then read: labels (dots made `_`), node, IP, image, owner (a ReplicaSet, so
    // its Deployment too); no annotations
    // unless asked; the excluded pod's lines are not sent.
    pod_line(dir.path(), "a-0", "uid-a", "a first");
    pod_line(dir.path(), "b-0", "uid-b", "b excluded");
    let a = until_enriched(&weir, &out, "a-0", "uid-a");
    assert_eq!(
        a["kubernetes"],
        serde_json::json!({
            "namespace": "serving",
            "pod": {"name": "a-0", "uid": "uid-a", "ip": "10.1.2.3"},
            "container": {"name": "server", "image": "nvcr.io/nvidia/tritonserver:24.05-py3"},
            "labels": {"app": "triton", "app_kubernetes_io/name": "triton"},
            "node": {"name": "node-1"},
            "owner": {"kind": "ReplicaSet", "name": "a-0-rs"},
            "replicaset": {"name": "a-0-rs"},
            "deployment": {"name": "a-0"},
        })
    );
    assert!(events(&out).iter().all(|e| e["kubernetes"]["pod"]["uid"] != "uid-b"));

    // A pod added while watched; then deleted: its last lines are still enriched.
    api.change("ADDED", pod("d-0", "uid-d", "node-1", labels.clone()));
    until_enriched(&weir, &out, "d-0", "uid-d");
    api.change("DELETED", pod("d-0", "uid-d", "node-1", labels.clone()));
    api.change("ADDED", pod("e-0", "uid-e", "node-1", labels.clone()));
    until_enriched(&weir, &out, "e-0", "uid-e"); // the deletion before it was applied too
    pod_line(dir.path(), "d-0", "uid-d", "d last words");
    let ok = wait_for(TIMEOUT, || events(&out).iter().any(|e| e["message"] == "d last words"));
    assert!(ok);
    let last = events(&out).into_iter().find(|e| e["message"] == "d last words").unwrap();
    assert_eq!(last["kubernetes"]["labels"]["app"], "triton", "kept for delay_deletion_secs");

    // The token expires (the server takes a new one) and the watch's version is compacted
    // away (410 Gone): weir lists again with the token it reads from the file.
    let lists = api.state().lists;
    api.state().token = "token-2".into();
    api.compact();
    assert!(wait_for(TIMEOUT, || api.state().refused_tokens >= 1), "stderr:\n{}", weir.stderr());
    std::fs::write(dir.path().join("token"), "token-2\n").unwrap();
    api.change("ADDED", pod("f-0", "uid-f", "node-1", labels.clone()));
    until_enriched(&weir, &out, "f-0", "uid-f");
    assert!(api.state().lists > lists, "listed again after 410 Gone");

    // The API goes down: logs keep flowing, known pods still enriched, new ones with the
    // fields of their path.
    api.state().down = true;
    pod_line(dir.path(), "a-0", "uid-a", "a during the outage");
    pod_line(dir.path(), "g-0", "uid-g", "g during the outage");
    let ok = wait_for(TIMEOUT, || {
        let e = events(&out);
        ["a during the outage", "g during the outage"]
            .iter()
            .all(|m| e.iter().any(|x| x["message"] == *m))
    });
    assert!(ok, "stderr:\n{}", weir.stderr());
    let e = events(&out);
    let during = |m: &str| e.iter().find(|x| x["message"] == m).unwrap().clone();
    assert_eq!(during("a during the outage")["kubernetes"]["labels"]["app"], "triton");
    assert_eq!(during("g during the outage")["kubernetes"]["pod"]["name"], "g-0");
    assert!(during("g during the outage")["kubernetes"].get("labels").is_none());
    // Back: the new pod is found.
    api.change("ADDED", pod("g-0", "uid-g", "node-1", labels));
    api.state().down = false;
    until_enriched(&weir, &out, "g-0", "uid-g");
    assert!(weir.stop().success());
    assert!(api.state().watches >= 2);
}

/// With `use_api = false` the API is not contacted, and events carry the fields of the path.
/// In a pod without the service account's token mounted (`KUBERNETES_SERVICE_HOST` set,
/// nothing at the token's path), weir says so once and reads the logs all the same.
#[test]
fn without_the_api_logs_flow_with_the_fields_of_the_path() {
    use crate::kube_api_server::{KubeApi, pod};
    let api = KubeApi::start("token-1");
    api.change("ADDED", pod("a-0", "uid-a", "node-1", serde_json::json!({"app": "triton"})));
    let path_only = serde_json::json!({"namespace": "serving",
        "pod": {"name": "a-0", "uid": "uid-a"}, "container": {"name": "server"}});

    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "use_api = false\nkube_api_endpoint = \"{}\"\nself_node_name = \"node-1\"",
        api.url()
    );
    let weir = Weir::start(dir.path(), &pipeline(&extra, None));
    pod_line(dir.path(), "a-0", "uid-a", "a line");
    let got = wait_events(&weir, &dir.path().join("out.log"), 1);
    assert!(weir.stop().success());
    assert_eq!(got[0]["kubernetes"], path_only);
    let state = api.state();
    assert_eq!((state.lists, state.watches), (0, 0), "the API was contacted");
    drop(state);

    if Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token").exists() {
        eprintln!("this machine is a pod with a service account token: not tried without one");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let env = [("KUBERNETES_SERVICE_HOST", "127.0.0.1"), ("NODE_NAME", "node-1")];
    let weir = Weir::start_env(dir.path(), &pipeline("", None), &env);
    pod_line(dir.path(), "a-0", "uid-a", "a line");
    let got = wait_events(&weir, &dir.path().join("out.log"), 1);
    assert!(weir.stop().success());
    assert_eq!(got[0]["kubernetes"], path_only);
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert_eq!(stderr.matches("token is not mounted").count(), 1, "{stderr}");
}
