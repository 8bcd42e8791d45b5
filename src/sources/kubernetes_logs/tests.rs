use super::decode::{Decoder, Format, Record, Stream, parse_cri, parse_docker};
use super::*;
use crate::sources::util::lines::Line;

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_owned())
}

fn json(e: &crate::event::Event) -> serde_json::Value {
    serde_json::to_value(e.view()).unwrap()
}

#[test]
fn a_cri_line_gives_time_stream_tag_and_message() {
    let r =
        parse_cri(&b("2024-05-01T10:00:00.123456789Z stderr F Traceback (most recent call last):"))
            .unwrap();
    assert_eq!(
        r.time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "2024-05-01T10:00:00.123456789Z"
    );
    assert_eq!(r.stream, Stream::Stderr);
    assert!(!r.partial);
    assert_eq!(r.message, "Traceback (most recent call last):");
    // A partial record; a time with an offset; tags after the first; an empty message.
    let r = parse_cri(&b("2024-05-01T12:00:00.5+02:00 stdout P:x  two spaces")).unwrap();
    assert!(r.partial);
    assert_eq!(r.time.to_rfc3339(), "2024-05-01T10:00:00.500+00:00");
    assert_eq!(r.message, " two spaces");
    assert_eq!(parse_cri(&b("2024-05-01T10:00:00Z stdout F ")).unwrap().message, "");
    assert_eq!(parse_cri(&b("2024-05-01T10:00:00Z stdout F")).unwrap().message, "");
}

#[test]
fn lines_that_are_not_cri_are_refused_with_the_reason() {
    for (line, why) in [
        ("plain text", "expected `<time> <stream> <tag> <message>`"),
        ("yesterday stdout F x", "is not RFC 3339"),
        ("2024-05-01T10:00:00Z stdfoo F x", "stream"),
        ("2024-05-01T10:00:00Z stdout X x", "tag"),
    ] {
        let e = parse_cri(&b(line)).unwrap_err();
        assert!(e.contains(why), "{line}: {e}");
    }
}

#[test]
fn a_docker_line_is_partial_when_its_log_has_no_newline() {
    let r = parse_docker(&b(
        r#"{"log":"hello \"world\"\n","stream":"stdout","time":"2024-05-01T10:00:00.000000001Z"}"#,
    ))
    .unwrap();
    assert_eq!(
        r,
        Record {
            time: r.time,
            stream: Stream::Stdout,
            partial: false,
            message: b("hello \"world\"")
        }
    );
    let r = parse_docker(&b(
        r#"{"log":"part","stream":"stderr","time":"2024-05-01T10:00:00Z","attrs":{}}"#,
    ))
    .unwrap();
    assert!(r.partial);
    assert!(parse_docker(&b(r#"{"log":1}"#)).unwrap_err().contains("invalid type"));
    let e = Format::Docker.parse(&b("{")).unwrap_err();
    assert!(e.starts_with("not a Docker json-file log line: "), "{e}");
}

/// Feeds `lines` (each with its newline counted) to a decoder; (resume, event as JSON).
fn decode(d: &mut Decoder, lines: &[&str]) -> Vec<(u64, serde_json::Value)> {
    let fields = SharedFields::new(ObjectMap::new());
    let mut out = Vec::new();
    let mut at = 0;
    for l in lines {
        let end = at + l.len() as u64 + 1;
        d.push(Line { bytes: b(l), start: at, end, truncated: false }, &fields, &mut out);
        at = end;
    }
    out.into_iter().map(|(r, e)| (r, json(&e))).collect()
}

#[test]
fn cri_parts_are_joined_per_stream_and_resume_before_what_is_held() {
    let mut d = Decoder::new(1024, 1024);
    let lines = [
        "2024-05-01T10:00:00Z stdout P {\"model\": ", // 0..42
        "2024-05-01T10:00:01Z stderr F warning",      // stderr, whole, while stdout is held
        "2024-05-01T10:00:02Z stdout P \"resnet\", ",
        "2024-05-01T10:00:03Z stdout F \"ms\": 12}",
    ];
    let out = decode(&mut d, &lines);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].1["message"], "warning");
    assert_eq!(out[0].1["stream"], "stderr");
    assert_eq!(out[0].0, 0, "stdout's first part is held: a restart resumes there");
    assert_eq!(out[1].1["message"], "{\"model\": \"resnet\", \"ms\": 12}");
    assert_eq!(out[1].1["stream"], "stdout");
    assert_eq!(out[1].1["@timestamp"], "2024-05-01T10:00:00Z", "the first part's time");
    let total: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
    assert_eq!(out[1].0, total);
    assert_eq!(d.pending_start(), None);
}

#[test]
fn a_joined_line_is_cut_at_its_limit_and_marked() {
    let mut d = Decoder::new(1024, 10);
    let out = decode(
        &mut d,
        &[
            "2024-05-01T10:00:00Z stdout P 0123456",
            "2024-05-01T10:00:00Z stdout P 789abc",
            "2024-05-01T10:00:00Z stdout F def",
            "2024-05-01T10:00:00Z stdout F next",
        ],
    );
    assert_eq!(out[0].1["message"], "0123456789");
    assert_eq!(out[0].1["log"]["flags"], serde_json::json!(["truncated"]));
    assert!(out[0].1["error"]["message"].is_string());
    assert_eq!(out[1].1["message"], "next");
    assert!(out[1].1.get("log").is_none());
}

#[test]
fn docker_parts_are_joined_and_a_file_keeps_its_format() {
    let mut d = Decoder::new(1024, 1024);
    let out = decode(
        &mut d,
        &[
            r#"{"log":"a long ","stream":"stdout","time":"2024-05-01T10:00:00Z"}"#,
            r#"{"log":"line\n","stream":"stdout","time":"2024-05-01T10:00:01Z"}"#,
            "2024-05-01T10:00:00Z stdout F a CRI line in a Docker file",
        ],
    );
    assert_eq!(out[0].1["message"], "a long line");
    assert_eq!(out[0].1["@timestamp"], "2024-05-01T10:00:00Z");
    // Kept whole, with the reason: nothing is lost.
    assert_eq!(out[1].1["message"], "2024-05-01T10:00:00Z stdout F a CRI line in a Docker file");
    assert!(out[1].1["error"]["message"].as_str().unwrap().contains("Docker json-file"));
    assert_eq!(Format::detect(b"{"), Format::Docker);
}

#[test]
fn flush_emits_what_is_held_in_order_of_position() {
    let mut d = Decoder::new(1024, 1024);
    let lines = ["2024-05-01T10:00:00Z stderr P a", "2024-05-01T10:00:00Z stdout P b"];
    assert!(decode(&mut d, &lines).is_empty());
    assert_eq!(d.pending_start(), Some(0));
    let fields = SharedFields::new(ObjectMap::new());
    let mut out = Vec::new();
    d.flush(64, &fields, &mut out);
    let got: Vec<_> = out.iter().map(|(r, e)| (*r, json(e)["message"].clone())).collect();
    assert_eq!(got, [(32, serde_json::json!("a")), (64, serde_json::json!("b"))]);
}

#[test]
fn a_pod_log_path_gives_namespace_pod_uid_and_container() {
    let p = PodPath::parse(Path::new("kserve_sklearn-iris-predictor-00001-deployment-7d9f_0b1c2d3e-1111-2222-3333-444455556666/kserve-container/0.log")).unwrap();
    assert_eq!(
        p,
        PodPath {
            namespace: "kserve",
            pod: "sklearn-iris-predictor-00001-deployment-7d9f",
            uid: "0b1c2d3e-1111-2222-3333-444455556666",
            container: "kserve-container",
        }
    );
    assert!(PodPath::parse(Path::new("no-underscores/c/0.log")).is_none());
    assert!(PodPath::parse(Path::new("a_b_c/0.log")).is_none());
}

#[test]
fn exclusions_and_bad_patterns_are_checked() {
    let c: KubernetesLogsConfig = toml_edit::de::from_str(
        "exclude_namespaces = [\"kube-[\"]\nexclude_containers = [\"a/b\"]\nmax_merged_line_bytes = 0",
    )
    .unwrap();
    let issues = c.check().err().unwrap();
    let fields: Vec<_> = issues.iter().map(|i| i.field.clone().unwrap()).collect();
    assert_eq!(fields, ["exclude_namespaces", "exclude_containers", "max_merged_line_bytes"]);
    assert!(toml_edit::de::from_str::<KubernetesLogsConfig>("pods = \"/x\"").is_err());
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_a_pod_tree_with_fields_from_the_path_and_skips_the_excluded() {
    use crate::contract::{Expect, run_source};
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods");
    let uid = "6b5a3c1e-0000-4000-8000-000000000001";
    let pod = pods.join(format!("models_triton-0_{uid}"));
    write(&pod.join("triton/0.log"), "2024-05-01T10:00:00.000000001Z stdout F I0501 ready\n");
    // Rotated and compressed files, an excluded namespace and an excluded container.
    write(&pod.join("triton/0.log.20240501-095959"), "2024-05-01T09:59:59Z stdout F old\n");
    write(&pod.join("triton/0.log.20240501-095000.gz"), "\x1f\u{8b}garbage\n");
    write(&pods.join("kube-system_dns_u1/coredns/0.log"), "2024-05-01T10:00:00Z stdout F no\n");
    write(&pod.join("istio-proxy/0.log"), "2024-05-01T10:00:00Z stdout F no\n");
    // Files are read in the order of their paths: this one comes after every excluded one.
    write(&pods.join("zz_last_u2/app/0.log"), "2024-05-01T10:00:00Z stdout F last\n");
    let c: KubernetesLogsConfig = toml_edit::de::from_str(&format!(
        "pods_dir = \"{}/\"\nexclude_namespaces = [\"kube-*\"]\nexclude_containers = [\"istio-proxy\"]",
        pods.display()
    ))
    .unwrap();
    let run = run_source(&c, "kubernetes_logs", &dir.path().join("data"), 2).await;
    let messages: Vec<_> = run.out.iter().map(|e| json(e)["message"].clone()).collect();
    assert_eq!(messages, ["I0501 ready", "last"]);
    let e = json(&run.out[0]);
    assert_eq!(e["message"], "I0501 ready");
    assert_eq!(e["@timestamp"], "2024-05-01T10:00:00.000000001Z");
    assert_eq!(e["stream"], "stdout");
    assert_eq!(
        e["kubernetes"],
        serde_json::json!({"namespace": "models", "pod": {"name": "triton-0", "uid": uid},
            "container": {"name": "triton"}})
    );
    assert_eq!(e["log"]["file"]["path"], pod.join("triton/0.log").display().to_string());
    Expect { received: 2, sent: 2, ..Expect::default() }.check(run, None).await;
}
