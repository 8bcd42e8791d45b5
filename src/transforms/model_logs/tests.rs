//! Grammar tests: every line of every model-server sample in `tests/data/model-servers`, read
//! both by its own grammar and by `auto`, with the fields each must give.

use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value as Json, json};

use super::*;
use crate::transforms::test_util::{metrics, run};

fn samples() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/model-servers")
}

/// Year-less timestamps resolve against this "now".
fn june_2026() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
}

fn transform(format: &str) -> ParseModelLog {
    let c: ParseModelLogConfig =
        toml_edit::de::from_str(&format!("format = \"{format}\"\ntimezone = \"UTC\"")).unwrap();
    let mut t = c.build(&metrics()).unwrap();
    t.grammars = t.grammars.with_clock(june_2026);
    t
}

/// Parses `line` and returns the event as JSON.
fn parse(t: &mut ParseModelLog, line: &str) -> Json {
    let (out, named) = run(t, 1, vec![Event::from_message(line.to_string())]);
    assert!(named[0].is_empty());
    serde_json::to_value(out[0].view()).unwrap()
}

/// The value at a dotted path (`@timestamp` is one segment).
fn at<'a>(event: &'a Json, path: &str) -> &'a Json {
    if path == "@timestamp" {
        return &event["@timestamp"];
    }
    path.split('.').fold(event, |v, seg| &v[seg])
}

/// Checks every expected field; floats within 1e-9.
fn check(event: &Json, expected: &Json, what: &str) {
    let expects_error = expected.as_object().unwrap().keys().any(|k| k.starts_with("error."));
    if !expects_error {
        assert!(event.get("error").is_none(), "{what}: parse error: {event}");
    }
    for (path, want) in expected.as_object().unwrap() {
        let got = at(event, path);
        let same = match (got.as_f64(), want.as_f64()) {
            (Some(g), Some(w)) if want.is_f64() => (g - w).abs() < 1e-9,
            _ => got == want,
        };
        assert!(same, "{what}: `{path}` is {got}, expected {want}\nevent: {event}");
    }
}

/// Every line of `file`, in order, with its expected fields.
fn check_file(file: &str, format: &str, expected: &[Json]) {
    let text = std::fs::read_to_string(samples().join(file)).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), expected.len(), "{file}: one expectation per line");
    for (fmt, label) in [(format, "own grammar"), ("auto", "auto")] {
        let mut t = transform(fmt);
        for (i, (line, want)) in lines.iter().zip(expected).enumerate() {
            let event = parse(&mut t, line);
            check(&event, want, &format!("{file} line {} ({label})", i + 1));
            assert_eq!(event["event"]["dataset"], format, "{file} line {} ({label})", i + 1);
        }
    }
}

#[test]
fn torchserve_access() {
    check_file(
        "torchserve_access.log",
        "torchserve_access",
        &[
            json!({
                "@timestamp": "2018-10-15T13:56:18.976Z", "log.level": "INFO",
                "process.thread.name": "BackendWorker-9000", "client.ip": "127.0.0.1",
                "client.port": 64003, "http.request.method": "POST",
                "url.path": "/predictions/resnet-18", "model.name": "resnet-18",
                "http.response.status_code": 200, "inference.status_class": "2xx",
                "event.outcome": "success", "inference.latency_seconds": 0.118,
                "service.name": "torchserve", "event.action": "request",
            }),
            json!({
                "@timestamp": "2022-03-01T00:19:27.304Z", "client.ip": "172.17.0.1",
                "client.port": 55078, "http.request.method": "PUT",
                "model.name": "BERTSeqClassification", "http.response.status_code": 200,
                "inference.latency_seconds": 0.039, "event.action": "request",
            }),
        ],
    );
}

#[test]
fn torchserve_metrics() {
    check_file(
        "torchserve_metrics.log",
        "torchserve_metrics",
        &[
            json!({
                "@timestamp": "2022-08-26T03:42:59.892Z", "log.level": "INFO",
                "process.thread.name": "W-9001-second-resnet-18_1.0-stdout",
                "inference.metric.name": "PredictionTime", "inference.metric.unit": "seconds",
                "inference.metric.value": 0.01299, "inference.latency_seconds": 0.01299,
                "model.name": "second-resnet-18", "model.version": "1.0",
                "host.name": "ip-172-31-22-204",
                "http.request.id": "a93cb112-7344-48da-8800-506628631f4e",
                "event.kind": "metric", "service.name": "torchserve",
            }),
            json!({
                "@timestamp": "2024-04-15T21:36:12.712Z",
                "process.thread.name": "epollEventLoopGroup-3-2",
                "inference.metric.name": "ts_inference_requests_total",
                "inference.metric.unit": "Count", "inference.metric.value": 1.0,
                "model.name": "xgb_iris", "model.version": "default",
                "host.name": "ip-172-31-12-209", "event.kind": "metric",
            }),
        ],
    );
}

#[test]
fn triton() {
    check_file(
        "triton_verbose.log",
        "triton",
        &[
            json!({
                "@timestamp": "2026-05-20T20:03:25.829575Z", "log.level": "INFO",
                "process.thread.id": 3355, "log.origin.file.name": "model_lifecycle.cc",
                "log.origin.file.line": 441, "model.name": "simple",
                "event.action": "model_load", "service.name": "triton",
            }),
            // August is after "now" (June 2026): the line is from last year.
            json!({
                "@timestamp": "2025-08-29T15:18:17.820373Z", "http.request.method": "POST",
                "url.path": "/v2/models/pyannote_diarization/versions/1/infer",
                "model.name": "pyannote_diarization", "model.version": "1",
                "event.action": "request_received",
            }),
            json!({
                "@timestamp": "2025-08-29T15:18:17.820476Z", "http.request.id": "G-5e5fc60c",
                "model.name": "pyannote_diarization", "model.version": "1",
                "inference.batch_size": 1, "inference.timeout_seconds": 0.0,
                "event.action": "request_prepared",
            }),
        ],
    );
}

#[test]
fn vllm() {
    check_file(
        "vllm.log",
        "vllm",
        &[
            json!({
                "@timestamp": "2026-01-22T18:27:20Z", "log.level": "INFO",
                "log.origin.file.name": "metrics.py", "log.origin.file.line": 449,
                "inference.throughput.prompt_tokens_per_second": 0.0,
                "inference.throughput.generation_tokens_per_second": 41.7,
                "inference.requests.running": 1, "inference.requests.swapped": 0,
                "inference.requests.waiting": 0, "inference.gpu_kv_cache_usage": 0.02,
                "inference.cpu_kv_cache_usage": 0.0, "event.kind": "metric",
                "event.action": "stats", "service.name": "vllm",
            }),
            json!({
                "@timestamp": "2025-06-16T10:03:14Z", "log.origin.file.name": "loggers.py",
                "log.origin.file.line": 87, "inference.engine": 0,
                "inference.throughput.prompt_tokens_per_second": 1254.4,
                "inference.throughput.generation_tokens_per_second": 29.2,
                "inference.requests.running": 10, "inference.requests.waiting": 4,
                "inference.gpu_kv_cache_usage": 0.579, "inference.prefix_cache_hit_rate": 0.405,
                "event.action": "stats",
            }),
            json!({
                "@timestamp": "2026-05-19T10:13:11Z", "process.pid": 3646,
                "process.name": "APIServer",
                "inference.throughput.generation_tokens_per_second": 1055.3,
                "inference.requests.running": 18, "inference.requests.waiting": 43,
                "inference.gpu_kv_cache_usage": 0.959, "inference.prefix_cache_hit_rate": 0.0,
            }),
            json!({
                "@timestamp": "2026-04-10T03:35:45Z", "log.origin.file.name": "async_llm.py",
                "http.request.id": "chatcmpl-b654b653c8714431a1096a3be88f1662",
                "event.action": "request_received",
            }),
            json!({
                "process.pid": 90458, "process.name": "APIServer", "log.level": "INFO",
                "client.ip": "10.80.23.18", "client.port": 51408,
                "http.request.method": "POST", "url.path": "/v1/chat/completions",
                "http.response.status_code": 200, "inference.status_class": "2xx",
                "event.action": "request",
            }),
        ],
    );
}

#[test]
fn bentoml_access() {
    check_file(
        "bentoml_access.log",
        "bentoml_access",
        &[json!({
            "@timestamp": "2024-04-13T02:03:49Z", "log.level": "INFO",
            "inference.component": "entry_service", "model.name": "Summarization",
            "client.address": "44.xxx.xxx.104", "client.ip": null, "client.port": 7181,
            "url.scheme": "http", "http.request.method": "GET", "url.path": "/docs.json",
            "http.request.mime_type": null, "http.response.status_code": 200,
            "http.response.mime_type": "application/json", "http.response.body.bytes": 5543,
            "inference.latency_seconds": 0.001972,
            "trace.id": "7589d361df3e8ad3f0a71acb44d150be", "span.id": "07ef3bc1685d067c",
            "service.name": "bentoml", "event.action": "request",
        })],
    );
}

#[test]
fn bentoml_monitoring_keeps_the_u64_request_id_exact() {
    check_file(
        "bentoml_monitoring.jsonl",
        "bentoml_monitoring",
        &[json!({
            "@timestamp": "2022-11-02T12:38:48.345552Z",
            "http.request.id": "14419506828678509143",
            "inference.features": {"sepal length": 4.9, "sepal width": 3.0, "petal length": 1.4, "petal width": 0.2},
            "inference.prediction": "0", "event.action": "prediction",
            "service.name": "bentoml",
        })],
    );
}

#[test]
fn rayserve_access() {
    check_file(
        "rayserve_access.log",
        "rayserve_access",
        &[
            json!({
                "@timestamp": "2024-11-20T13:53:00.197Z", "log.level": "INFO",
                "model.name": "default_A", "inference.replica": "zosusx8c",
                "http.request.id": "26891433-a91a-4d27-b543-0936feb5f5c1",
                "http.request.method": "GET", "url.path": "/",
                "http.response.status_code": 200, "inference.latency_seconds": 0.0041,
                "service.name": "ray_serve", "event.action": "request",
            }),
            json!({
                "url.path": "/{wildcard}", "http.response.status_code": 422,
                "inference.status_class": "4xx", "event.outcome": "failure",
                "inference.latency_seconds": 0.0037,
            }),
            json!({
                "@timestamp": "2024-11-20T13:51:44.803Z", "model.name": "default_D",
                "inference.call": "method", "inference.status_class": "ok",
                "event.outcome": "success", "inference.latency_seconds": 0.0013,
                "http.request.method": null,
            }),
        ],
    );
}

#[test]
fn rayserve_json() {
    check_file(
        "rayserve_json.log",
        "rayserve_json",
        &[json!({
            "@timestamp": "2023-12-07T12:59:45.271Z", "log.level": "INFO",
            "model.name": "Model", "inference.replica": "default#Model#PUGBSJ",
            "inference.application": "default",
            "http.request.id": "8d316c3b-4c9f-4769-8080-b6867ca46d1e", "url.path": "/",
            "message": "replica.py:719 - Started executing request 8d316c3b-4c9f-4769-8080-b6867ca46d1e",
            "service.name": "ray_serve",
        })],
    );
}

#[test]
fn kserve() {
    check_file(
        "kserve_container.log",
        "kserve",
        &[json!({
            "@timestamp": "2025-05-14T17:45:10.901Z", "log.logger": "uvicorn.access",
            "log.level": "INFO", "client.ip": "127.0.0.1", "client.port": 42226,
            "process.pid": 1647689, "http.request.method": "POST",
            "url.path": "/openai/v1/chat/completions", "http.response.status_code": 200,
            "service.name": "kserve", "event.action": "request",
        })],
    );
}

#[test]
fn python_logging_prediction_lines_become_fields() {
    let mut t = transform("auto");
    let e = parse(
        &mut t,
        "2024-05-01 10:00:00,123 [INFO] model_server: Input Data: {'feature1': 0.75, 'feature2': 1.3} | Prediction: class_A",
    );
    check(
        &e,
        &json!({
            "@timestamp": "2024-05-01T10:00:00.123Z", "log.level": "INFO",
            "log.logger": "model_server",
            "inference.features": {"feature1": 0.75, "feature2": 1.3},
            "inference.prediction": "class_A", "event.action": "prediction",
            "service.name": "python", "event.dataset": "python_logging",
        }),
        "python prediction",
    );
    let e = parse(
        &mut t,
        "2024-05-01 10:00:01,000 [INFO] app.predict: Model: churn | Version: 3 | Features: {'tenure': np.float64(12.0), 'plan': 'gold', 'tags': ['a', 'b']} | Prediction: 0.83 | Latency: 12.5ms | request_id: 77",
    );
    check(
        &e,
        &json!({
            "model.name": "churn", "model.version": "3",
            "inference.features": {"tenure": 12.0, "plan": "gold", "tags": ["a", "b"]},
            "inference.prediction": 0.83, "inference.latency_seconds": 0.0125,
            "http.request.id": "77",
        }),
        "python labelled values",
    );
    let e = parse(&mut t, "2024-05-01 10:00:02,000 [WARNING] app.loader: cache is cold");
    check(&e, &json!({"log.level": "WARNING", "event.action": "log"}), "plain line");
}

#[test]
fn python_tracebacks_become_errors() {
    let mut t = transform("python_logging");
    let line = "2026-05-01 10:00:00,123 [ERROR] model_server.handler: prediction failed for request 17\nTraceback (most recent call last):\n  File \"/app/handler.py\", line 42, in handle\n    output = self.model.predict(batch)\nValueError: feature 'monthly_charges' out of range: -3.0";
    let e = parse(&mut t, line);
    check(
        &e,
        &json!({
            "log.level": "ERROR", "log.logger": "model_server.handler",
            "error.type": "ValueError",
            "error.message": "ValueError: feature 'monthly_charges' out of range: -3.0",
            "event.outcome": "failure", "inference.status_class": "error",
            "event.action": "prediction_failed",
        }),
        "traceback",
    );
    assert!(e["error"]["stack_trace"].as_str().unwrap().starts_with("Traceback"));
}

#[test]
fn json_prediction_logs() {
    let mut t = transform("auto");
    let e = parse(
        &mut t,
        r#"{"timestamp":"2026-05-01T10:00:00.250Z","level":"INFO","logger":"model_server.predict","model":"churn-xgb","model_version":3,"request_id":18446744073709551615,"latency_ms":12.5,"features":{"tenure_months":12.0,"contract":"one-year"},"prediction":"churn","score":0.7,"usage":{"prompt_tokens":12,"completion_tokens":30},"region":"eu"}"#,
    );
    check(
        &e,
        &json!({
            "@timestamp": "2026-05-01T10:00:00.250Z", "log.level": "INFO",
            "log.logger": "model_server.predict", "model.name": "churn-xgb",
            "model.version": "3", "http.request.id": "18446744073709551615",
            "inference.latency_seconds": 0.0125,
            "inference.features": {"tenure_months": 12.0, "contract": "one-year"},
            "inference.prediction": "churn", "inference.score": 0.7,
            "inference.tokens.prompt": 12, "inference.tokens.completion": 30,
            "region": "eu", "event.dataset": "json_prediction", "event.action": "prediction",
        }),
        "json prediction",
    );
    // A small request id is a string too, and a Python dict logged as text becomes features.
    let e = parse(
        &mut t,
        r#"{"model":"m","request_id":42,"inputs":"{'a': 1, 'b': 'x'}","status":500,"error":"boom"}"#,
    );
    check(
        &e,
        &json!({
            "http.request.id": "42", "inference.features": {"a": 1, "b": "x"},
            "http.response.status_code": 500, "inference.status_class": "error",
            "event.outcome": "failure", "error.message": "boom",
        }),
        "json error",
    );
}

#[test]
fn the_demo_source_lines_are_all_read() {
    // One of each shape the demo source writes.
    let mut t = transform("auto");
    for (line, dataset) in [
        (
            r#"2026-05-01 10:00:00,123 [INFO ] W-9000-churn-xgb_3 ACCESS_LOG - /10.0.1.2:40000 "POST /predictions/churn-xgb HTTP/1.1" 503 912"#,
            "torchserve_access",
        ),
        (
            "2026-05-01 10:00:00,123 [INFO ] W-9000-churn-xgb_3-stdout MODEL_METRICS - PredictionTime.Milliseconds:12.50|#ModelName:churn-xgb,Level:Model|#hostname:demo-host,requestID:0000abcd-0000-4000-8000-000000000001,timestamp:1777600000",
            "torchserve_metrics",
        ),
    ] {
        let e = parse(&mut t, line);
        assert!(e.get("error").is_none(), "{e}");
        assert_eq!(e["event"]["dataset"], dataset);
        assert_eq!(e["model"]["name"], "churn-xgb");
    }
}

#[test]
fn failures_are_counted_per_grammar() {
    let c = grammar_counters();
    let labels = |g: &str| -> Labels {
        vec![("component_id".into(), "test".into()), ("grammar".into(), g.into())]
    };
    let triton_before = c.failures.get_or_create(&labels("triton")).get();
    let none_before = c.failures.get_or_create(&labels("none")).get();
    let vllm_before = c.failures.get_or_create(&labels("vllm")).get();

    let mut fixed = transform("triton");
    let e = parse(&mut fixed, "2018-10-15 13:56:18,976 [INFO ] something else");
    assert!(e["error"]["message"].as_str().unwrap().contains("not a Triton"), "{e}");
    let mut auto = transform("auto");
    let e = parse(&mut auto, "completely unrelated text");
    assert!(e["error"]["message"].as_str().unwrap().contains("no model-server grammar"));
    // A vLLM line whose stats part changed: claimed by vllm, blamed on it.
    let e = parse(&mut auto, "INFO 06-16 10:03:14 loggers.py no brackets anymore");
    assert!(e["error"]["message"].as_str().unwrap().starts_with("parse_model_log: vllm:"), "{e}");

    // Tests run in parallel on one registry: other tests only add, so "at least" holds.
    assert!(c.failures.get_or_create(&labels("triton")).get() > triton_before);
    assert!(c.failures.get_or_create(&labels("none")).get() > none_before);
    assert!(c.failures.get_or_create(&labels("vllm")).get() > vllm_before);
    let text = crate::metrics::global().encode();
    assert!(text.contains("weir_model_log_parse_failures_total{"), "{text}");
}

#[test]
fn drop_on_error_and_target() {
    let c: ParseModelLogConfig =
        toml_edit::de::from_str("format = \"kserve\"\ndrop_on_error = true\ntarget = \"srv\"")
            .unwrap();
    let mut t = c.build(&metrics()).unwrap();
    let good = r#"2025-05-14 17:45:10.901 uvicorn.access INFO:     127.0.0.1:42226 1647689 - "POST /v1/models/iris:predict HTTP/1.1" 500 Internal Server Error"#;
    let (out, named) =
        run(&mut t, 1, vec![Event::from_message(good), Event::from_message("garbage")]);
    assert_eq!(out.len(), 1);
    assert_eq!(named[0].len(), 1);
    let e = serde_json::to_value(out[0].view()).unwrap();
    assert_eq!(e["srv"]["model"]["name"], "iris");
    assert_eq!(e["srv"]["inference"]["status_class"], "5xx");
    assert_eq!(e["message"], good);
}

#[test]
fn deep_insertion_keeps_existing_fields() {
    // The file source's `log.file.path` survives the grammar's `log.level`.
    let mut t = transform("torchserve_access");
    let mut event = Event::from_message(
        r#"2018-10-15 13:56:18,976 [INFO ] BackendWorker-9000 ACCESS_LOG - /127.0.0.1:64003 "POST /predictions/resnet-18 HTTP/1.1" 200 118"#,
    );
    event.insert(&parse_path("log.file.path").unwrap(), Value::from("/var/log/ts/access.log"));
    let (out, _) = run(&mut t, 1, vec![event]);
    let e = serde_json::to_value(out[0].view()).unwrap();
    assert_eq!(e["log"]["file"]["path"], "/var/log/ts/access.log");
    assert_eq!(e["log"]["level"], "INFO");
}

#[test]
fn config_errors() {
    let c: ParseModelLogConfig = toml_edit::de::from_str("format = \"torchserve_acess\"").unwrap();
    let e = c.build(&metrics()).err().unwrap();
    assert!(e.message.contains("did you mean `torchserve_access`"), "{}", e.message);
    let c: ParseModelLogConfig = toml_edit::de::from_str("timezone = \"Mars/Base\"").unwrap();
    assert_eq!(c.build(&metrics()).err().unwrap().field.as_deref(), Some("timezone"));
    assert!(toml_edit::de::from_str::<ParseModelLogConfig>("formats = \"auto\"").is_err());
}

#[test]
fn hostile_bytes_do_not_panic() {
    let mut t = transform("auto");
    let mut lines: Vec<Vec<u8>> = vec![
        b"\xff\xfe\x00".to_vec(),
        b"{".to_vec(),
        b"{\"features\": \"{{{{{{\"}".to_vec(),
        format!("2024-05-01 10:00:00,123 [INFO] a: Input Data: {}", "[".repeat(5000)).into_bytes(),
        b"I0000 00:00:00.000000 1 x.cc:1] HTTP request: 99 /".to_vec(),
        b"INFO 13-45 99:99:99 [x.py:1] Added request ".to_vec(),
    ];
    lines.push(Vec::new());
    let events = lines.into_iter().map(Event::from_message).collect();
    let (out, _) = run(&mut t, 1, events);
    assert_eq!(out.len(), 7);
}

/// Lines of each new shape, with the grammar `auto` must give them to and fields they must
/// give. Each is written from the format its server's source defines (cited in `grammars`).
#[test]
fn auto_routes_each_shape_to_its_own_grammar() {
    let mut t = transform("auto");
    let cases: Vec<(&str, &str, Json)> = vec![
        (
            r#"INFO:     10.0.3.14:53722 - "POST /predict HTTP/1.1" 200 OK"#,
            "uvicorn",
            json!({"client.ip": "10.0.3.14", "client.port": 53722, "url.path": "/predict",
                   "http.response.status_code": 200, "log.level": "INFO", "event.action": "request"}),
        ),
        (
            "INFO:     Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C to quit)",
            "uvicorn",
            json!({"message": "Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C to quit)",
                   "event.action": "log"}),
        ),
        (
            r#"INFO:     ::1:53144 - "GET /metrics HTTP/1.1" 200 OK"#,
            "uvicorn",
            json!({"client.ip": "::1", "client.port": 53144}),
        ),
        (
            r#"INFO:     10.80.23.18:51408 - "POST /v1/chat/completions HTTP/1.1" 200 OK"#,
            "vllm",
            json!({"client.ip": "10.80.23.18", "url.path": "/v1/chat/completions"}),
        ),
        (
            "2025-05-14 17:45:09.812 1 kserve INFO [model_server.py:register_model():402] Registering model: sklearn-iris",
            "kserve",
            json!({"@timestamp": "2025-05-14T17:45:09.812Z", "process.pid": 1,
                   "log.logger": "kserve", "log.level": "INFO",
                   "log.origin.file.name": "model_server.py",
                   "log.origin.function": "register_model", "log.origin.file.line": 402,
                   "message": "Registering model: sklearn-iris"}),
        ),
        (
            "2025-05-14 17:45:10.900 1 kserve.trace requestId: 2f4c, preprocess_ms: 0.5, explain_ms: 0, predict_ms: 3.25, postprocess_ms: 0.25",
            "kserve",
            json!({"http.request.id": "2f4c", "inference.latency_seconds": 0.004,
                   "event.action": "request"}),
        ),
        (
            "2025-05-14 17:45:10.901 1 uvicorn.error INFO:     Application startup complete.",
            "kserve",
            json!({"log.logger": "uvicorn.error", "log.level": "INFO",
                   "message": "Application startup complete."}),
        ),
        (
            "2024-11-27T10:00:10Z I 1 model_lifecycle.cc:818] successfully loaded 'densenet_onnx'",
            "triton",
            json!({"@timestamp": "2024-11-27T10:00:10Z", "log.level": "INFO",
                   "log.origin.file.name": "model_lifecycle.cc", "log.origin.file.line": 818}),
        ),
        (
            "I1127 10:00:20.000001 1 infer_request.cc:131] [request id: <id_unknown>] prepared: [0x0x7f] request id: <id_unknown>, model: simple, requested version: -1, actual version: 1, flags: 0x0, correlation id: 0, batch size: 1, priority: 0, timeout (us): 0",
            "triton",
            json!({"http.request.id": null, "model.name": "simple"}),
        ),
        (
            "CPUUtilization.Percent:37.5|#Level:Host|#hostname:ts-0,timestamp:1710148500",
            "torchserve_metrics",
            json!({"@timestamp": "2024-03-11T09:15:00Z", "inference.metric.name": "CPUUtilization",
                   "inference.metric.unit": "Percent", "inference.metric.value": 37.5,
                   "inference.metric.dimensions": {"Level": "Host", "hostname": "ts-0"},
                   "host.name": "ts-0", "event.kind": "metric"}),
        ),
        (
            "2024-03-11T09:15:01,450 - HandlerTime.Milliseconds:41.72|#ModelName:densenet161,Level:Model|#hostname:ts-0,requestID:3f1e,timestamp:1710148501",
            "torchserve_metrics",
            json!({"@timestamp": "2024-03-11T09:15:01.450Z", "model.name": "densenet161",
                   "inference.metric.value": 0.04172, "http.request.id": "3f1e"}),
        ),
        (
            r#"2026-11-27T10:00:02,007 - /127.0.0.1:60122 "GET /ping HTTP/1.1" 200 1"#,
            "torchserve_access",
            json!({"url.path": "/ping", "http.response.status_code": 200,
                   "inference.latency_seconds": 0.001}),
        ),
        (
            r#"2026-11-27T10:00:08,200 - /[0:0:0:0:0:0:0:1]:49920 "GET /metrics HTTP/1.1" 200 5"#,
            "torchserve_access",
            json!({"client.ip": "0:0:0:0:0:0:0:1", "client.port": 49920}),
        ),
        (
            "INFO 2023-06-05 14:03:01,440 Translator Translator#kPpQxW aXbYcZ123 /translate replica.py:523 - __CALL__ OK 30.7ms",
            "rayserve_access",
            json!({"model.name": "Translator", "inference.replica": "Translator#kPpQxW",
                   "http.request.id": "aXbYcZ123", "url.path": "/translate",
                   "log.origin.file.name": "replica.py", "inference.call": "__CALL__",
                   "inference.latency_seconds": 0.0307, "event.outcome": "success"}),
        ),
        (
            "INFO 2024-11-20 13:50:05,118 controller 4242 -- Adding 2 replicas to Deployment(name='Classifier', app='default').",
            "rayserve_access",
            json!({"inference.component": "controller", "process.pid": 4242, "event.action": "log"}),
        ),
        (
            "(APIServer pid=2211) ERROR 11-27 10:06:00 [serving_chat.py:210] Error in request chatcmpl-1: prompt too long",
            "vllm",
            json!({"log.level": "ERROR"}),
        ),
        (
            r#"10.2.0.15 - - [02/Apr/2026:08:01:12 +0000] "POST /predict HTTP/1.1" 200 57 "-" "python-requests/2.32.3""#,
            "gunicorn",
            json!({"@timestamp": "2026-04-02T08:01:12Z", "client.ip": "10.2.0.15",
                   "http.response.body.bytes": 57, "user_agent.original": "python-requests/2.32.3"}),
        ),
        (
            "[2026-04-02 08:00:00 +0000] [7] [INFO] Starting gunicorn 23.0.0",
            "gunicorn",
            json!({"process.pid": 7, "log.level": "INFO"}),
        ),
        (
            "127.0.0.1 - - [02/Apr/2026 08:10:05] \"\u{1b}[33mPOST /predict HTTP/1.1\u{1b}[0m\" 400 -",
            "flask",
            json!({"http.response.status_code": 400, "url.path": "/predict",
                   "event.outcome": "failure"}),
        ),
        (
            "[2026-04-02 08:10:09,117] ERROR in app: Exception on /predict [POST]",
            "flask",
            json!({"log.level": "ERROR", "log.origin.module": "app",
                   "message": "Exception on /predict [POST]"}),
        ),
        (
            r#"[02/Apr/2026 08:20:03] "POST /api/predict/ HTTP/1.1" 201 88"#,
            "django",
            json!({"http.response.status_code": 201, "http.response.body.bytes": 88}),
        ),
        (
            "WARNING:app.features:feature 'tenure' missing",
            "python_logging",
            json!({"log.level": "WARNING", "log.logger": "app.features",
                   "message": "feature 'tenure' missing"}),
        ),
        (
            "2026-03-14 09:12:44,301 - inference - INFO - Model loaded in 2.31s",
            "python_logging",
            json!({"@timestamp": "2026-03-14T09:12:44.301Z", "log.logger": "inference",
                   "log.level": "INFO"}),
        ),
        (
            r#"{"event": "prediction served", "level": "info", "logger": "api", "timestamp": "2026-03-14T09:12:44.301Z", "lineno": 42, "funcName": "predict"}"#,
            "json_prediction",
            json!({"message": "prediction served", "log.origin.file.line": 42,
                   "log.origin.function": "predict"}),
        ),
    ];
    for (line, grammar, want) in cases {
        let e = parse(&mut t, line);
        assert_eq!(e["event"]["dataset"], grammar, "{line}\n{e}");
        check(&e, &want, line);
    }
}

#[test]
fn the_applications_own_python_format() {
    let c: ParseModelLogConfig = toml_edit::de::from_str(
        "python.format = \"%(asctime)s.%(msecs)03d %(levelname)-8s [%(name)s:%(lineno)d] %(message)s\"\npython.datefmt = \"%d/%m/%Y %H:%M:%S\"\ntimezone = \"UTC\"",
    )
    .unwrap();
    let mut t = c.build(&metrics()).unwrap();
    let e = parse(
        &mut t,
        "14/03/2026 09:12:44.301 ERROR    [app.api:88] request 7 failed\nTraceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nKeyError: 'tenure'",
    );
    check(
        &e,
        &json!({"@timestamp": "2026-03-14T09:12:44.301Z", "log.level": "ERROR",
                "log.logger": "app.api", "log.origin.file.line": 88,
                "message": "request 7 failed", "error.type": "KeyError",
                "event.outcome": "failure", "event.dataset": "python_logging"}),
        "own format",
    );
    let c: ParseModelLogConfig = toml_edit::de::from_str("python.format = \"%(name\"").unwrap();
    assert_eq!(c.build(&metrics()).err().unwrap().field.as_deref(), Some("python.format"));
    let c: ParseModelLogConfig =
        toml_edit::de::from_str("python.format = \"x\"\npython.style = \"#\"").unwrap();
    assert_eq!(c.build(&metrics()).err().unwrap().field.as_deref(), Some("python.style"));
}

/// The grammars' `\d` and `\s` are ASCII, inside and outside classes; escaped backslashes and
/// the other classes are left as written.
#[test]
fn grammar_patterns_read_digits_and_spaces_as_ascii() {
    let re = grammars::compile(r"^(\d+)\s[\d.]+ [^\s/]+ \\d \S+$").unwrap();
    assert!(re.is_match(r"12 3.5 a \d b"));
    assert!(re.is_match("12\t3.5 añ \\d b"));
    // Arabic-Indic digits and a no-break space are not the ASCII ones.
    assert!(!re.is_match("\u{663}\u{664} 3.5 a \\d b"));
    assert!(!re.is_match("12\u{a0}3.5 a \\d b"));
    assert!(grammars::compile(r"\").is_err(), "a trailing backslash stays an error");
}
