//! `weir setup` against the Elasticsearch and Kibana stand-ins: the requests it makes on the
//! documented APIs (paths, methods, `kbn-xsrf`, bodies), waiting for peers that are not up
//! yet, that a second run changes nothing, and that every Kibana object it imports reads
//! fields that weir's Elasticsearch sink writes.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use regex::Regex;
use serde_json::{Value, json};

use crate::es_server::{EsServer, EsState};
use crate::kibana_server::{KibanaServer, KibanaState};
use crate::support::{Weir, free_port, wait_for, weir_bin};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn setup_with(es: &str, kibana: &str, wait_secs: &str) -> (i32, String) {
    let out = Command::new(weir_bin())
        .args(["setup", "--config"])
        .arg(root().join("pipelines/model-server-to-elk.toml"))
        .args(["--kibana", kibana])
        .env("ES_ENDPOINT", es)
        .env("KIBANA_PUBLIC_URL", "http://localhost:5601")
        .env("WEIR_SETUP_WAIT_SECS", wait_secs)
        .output()
        .expect("run weir setup");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Errors go to stderr, as in every other command; stdout is what was set up.
    assert!(
        !stdout.lines().any(|l| l.starts_with("error:")),
        "weir setup printed an error on stdout:\n{stdout}"
    );
    let text = stdout.into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn setup(es: &EsServer, kibana: &KibanaServer) -> (i32, String) {
    setup_with(&es.url(), &kibana.url(), "30")
}

/// The shipped NDJSON's objects.
fn shipped() -> Vec<Value> {
    std::fs::read_to_string(root().join("deploy/kibana/weir-dashboards.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn installs_on_current_apis_then_changes_nothing() {
    let es = EsServer::start();
    // Kibana answers 503 while it starts: setup waits, saying so.
    let kibana = KibanaServer::start_with(KibanaState { starting: 2, ..KibanaState::default() });
    let (code, out) = setup(&es, &kibana);
    assert_eq!(code, 0, "{out}");
    for line in [
        "sinks.elasticsearch: Elasticsearch 8.15.0 at",
        "sinks.elasticsearch: ILM policy weir-elasticsearch: created",
        "sinks.elasticsearch: index template weir-elasticsearch for logs-model_serving-* (composed of logs@mappings, logs@settings, ecs@mappings): created",
        "waiting for Kibana at http://127.0.0.1:",
        "GET /api/status answered 503",
        "Kibana 8.15.0 at",
        "Kibana data view weir-logs (logs-model_serving-*): created",
        "Kibana dashboards, Lens visualizations and saved searches (16 objects): created",
        "dashboard \"Model serving\": http://localhost:5601/app/dashboards#/view/weir-model-serving",
        "dashboard \"Model drift\": http://localhost:5601/app/dashboards#/view/weir-model-drift",
        "dashboard \"weir delivery\": http://localhost:5601/app/dashboards#/view/weir-delivery",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    {
        let st = es.state();
        let t = &st.index_templates["weir-elasticsearch"];
        assert_eq!(t["index_patterns"], json!(["logs-model_serving-*"]));
        assert_eq!(t["data_stream"], json!({}));
        assert_eq!(t["priority"], 200, "above the built-in logs template (100), as Fleet's are");
        assert_eq!(t["composed_of"], json!(["logs@mappings", "logs@settings", "ecs@mappings"]));
        let props = &t["template"]["mappings"]["properties"];
        assert_eq!(props["@timestamp"]["type"], "date");
        assert_eq!(props["log"]["properties"]["level"]["type"], "keyword");
        assert_eq!(props["event"]["properties"]["duration"]["type"], "long");
        assert!(props["event"]["properties"].get("duration_ms").is_none());
        assert_eq!(t["template"]["settings"]["index.lifecycle.name"], "weir-elasticsearch");
        assert!(st.ilm_policies["weir-elasticsearch"]["policy"]["phases"]["delete"].is_object());
    }
    {
        let st = kibana.state();
        let calls: BTreeSet<String> =
            st.requests.iter().map(|r| format!("{} {}", r.method, r.target)).collect();
        assert_eq!(
            calls.into_iter().collect::<Vec<_>>(),
            [
                "GET /api/data_views/data_view/weir-logs",
                "GET /api/status",
                "POST /api/data_views/data_view",
                "POST /api/saved_objects/_export",
                "POST /api/saved_objects/_import?overwrite=true",
            ]
        );
        assert!(st.requests.iter().filter(|r| r.method != "GET").all(|r| r.xsrf), "kbn-xsrf");
        let create = st.requests.iter().find(|r| r.target == "/api/data_views/data_view").unwrap();
        let body: Value = serde_json::from_slice(&create.body).unwrap();
        assert_eq!(body["override"], false);
        let view = &body["data_view"];
        assert_eq!(
            (&view["id"], &view["title"], &view["timeFieldName"]),
            (&json!("weir-logs"), &json!("logs-model_serving-*"), &json!("@timestamp"))
        );
        assert_eq!(view["fieldFormats"]["event.duration"]["params"]["inputFormat"], "nanoseconds");
        let import = st.requests.iter().find(|r| r.target.contains("_import")).unwrap();
        assert!(import.content_type.starts_with("multipart/form-data; boundary="));
        // What setup imports is the shipped file, less the data view it made through the API.
        let sent = String::from_utf8_lossy(&import.body);
        let expected: Vec<Value> =
            shipped().into_iter().filter(|o| o["type"] != "index-pattern").collect();
        let imported: Vec<Value> = st.objects.values().cloned().collect();
        assert_eq!(imported.len(), expected.len());
        for o in &expected {
            assert!(imported.contains(o), "{} not imported as shipped", o["id"]);
            assert!(sent.contains(&o["id"].to_string()));
        }
    }

    // Again: nothing to do.
    let writes = kibana.state().writes;
    let (code, out) = setup(&es, &kibana);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("created") && !out.contains("updated"), "{out}");
    assert_eq!(out.matches(": unchanged").count(), 4, "{out}");
    assert_eq!(kibana.state().writes, writes);

    // What was changed by hand is put back.
    es.state().index_templates.get_mut("weir-elasticsearch").unwrap()["_meta"]["weir_hash"] =
        json!("x");
    kibana.state().data_views.get_mut("weir-logs").unwrap()["title"] = json!("other-*");
    let dashboard = ("dashboard".to_string(), "weir-model-serving".to_string());
    kibana.state().objects.get_mut(&dashboard).unwrap()["attributes"]["description"] =
        json!("mine");
    let (code, out) = setup(&es, &kibana);
    assert_eq!(code, 0, "{out}");
    for line in [
        "index template weir-elasticsearch for logs-model_serving-* (composed of logs@mappings, logs@settings, ecs@mappings): updated",
        "Kibana data view weir-logs (logs-model_serving-*): updated",
        "(16 objects): updated",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert_eq!(kibana.state().data_views["weir-logs"]["title"], "logs-model_serving-*");
    let update = kibana.state().requests.last().cloned().unwrap();
    assert_eq!(update.target, "/api/saved_objects/_import?overwrite=true");
}

#[test]
fn without_the_logs_components_the_template_stands_alone() {
    // Elasticsearch before 8.11 has no `logs@mappings` and the like.
    let es = EsServer::start_with(EsState {
        component_templates: Default::default(),
        version: "8.10.4".into(),
        ..EsState::default()
    });
    let kibana = KibanaServer::start();
    let (code, out) = setup(&es, &kibana);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("index template weir-elasticsearch for logs-model_serving-*: created"),
        "{out}"
    );
    assert_eq!(es.state().index_templates["weir-elasticsearch"]["composed_of"], json!([]));
}

#[test]
fn a_peer_that_never_comes_up_is_waited_for_then_named_in_the_error() {
    let kibana = KibanaServer::start();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let started = std::time::Instant::now();
    let (code, out) = setup_with(&dead, &kibana.url(), "4");
    assert_eq!(code, 1, "{out}");
    // 4 s asked for; the default wait is 180 s. 60 s leaves a loaded machine room to start
    // the process and make its requests, and still tells the two apart.
    assert!(started.elapsed() < Duration::from_secs(60), "bounded: {:?}", started.elapsed());
    assert!(
        out.contains(&format!("waiting for Elasticsearch at {dead}: GET {dead}/: cannot connect")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "error: sinks.elasticsearch: Elasticsearch at {dead} was not ready within 4s"
        )),
        "{out}"
    );
    // Kibana is still set up: the dashboards do not need Elasticsearch to be up.
    assert!(out.contains("Kibana data view weir-logs"), "{out}");

    // A Kibana that refuses the credentials is an error at once, naming the request.
    let es = EsServer::start();
    let (code, out) = setup_with(&es.url(), &format!("http://127.0.0.1:{}", free_port()), "0");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error: Kibana: Kibana at http://127.0.0.1:"), "{out}");
    assert!(
        out.contains("GET http://127.0.0.1:") && out.contains("/api/status: cannot connect"),
        "{out}"
    );
}

/// Every field path of `v` (`a.b.c`), objects flattened; arrays of scalars count as their
/// field.
fn paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Value::Object(m) = v {
        for (k, val) in m {
            let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            if val.is_object() {
                paths(val, &p, out);
            } else {
                out.insert(p);
            }
        }
    }
}

/// The fields each shipped object reads: Lens columns' source fields, terms' secondary fields,
/// saved searches' columns and sort, and the fields of KQL queries (in Lens state, column
/// filters and search sources). (object id, field).
fn fields_read() -> Vec<(String, String)> {
    let kql_field = Regex::new(r"([A-Za-z_@][A-Za-z0-9_.@]*)\s*(?::|>=|<=|>|<)").unwrap();
    let mut out = Vec::new();
    for o in shipped() {
        let id = o["id"].as_str().unwrap().to_string();
        let mut push = |f: &str| out.push((id.clone(), f.to_string()));
        let mut queries: Vec<String> = Vec::new();
        let a = &o["attributes"];
        if o["type"] == "lens" {
            queries.push(a["state"]["query"]["query"].as_str().unwrap().to_string());
            for layer in
                a["state"]["datasourceStates"]["formBased"]["layers"].as_object().unwrap().values()
            {
                for c in layer["columns"].as_object().unwrap().values() {
                    if let Some(f) = c["sourceField"].as_str().filter(|f| *f != "___records___") {
                        push(f);
                    }
                    for f in c["params"]["secondaryFields"].as_array().into_iter().flatten() {
                        push(f.as_str().unwrap());
                    }
                    for f in c["params"]["filters"].as_array().into_iter().flatten() {
                        queries.push(f["input"]["query"].as_str().unwrap().to_string());
                    }
                }
            }
        }
        if o["type"] == "search" {
            for c in a["columns"].as_array().unwrap() {
                push(c.as_str().unwrap());
            }
            let source: Value = serde_json::from_str(
                a["kibanaSavedObjectMeta"]["searchSourceJSON"].as_str().unwrap(),
            )
            .unwrap();
            queries.push(source["query"]["query"].as_str().unwrap().to_string());
        }
        for q in queries {
            for c in kql_field.captures_iter(&q) {
                push(&c[1]);
            }
        }
    }
    out
}

#[test]
fn every_kibana_object_reads_fields_the_elasticsearch_sink_writes() {
    let es = EsServer::start();
    // Rejected for good: the dead letters that go to Elasticsearch too.
    let dlq = EsServer::start();
    let samples = root().join("deploy/sample-logs");
    let dir = tempfile::tempdir().unwrap();
    // The shipped ELK pipeline on its sample logs.
    let elk = std::fs::read_to_string(root().join("pipelines/model-server-to-elk.toml")).unwrap();
    let mut doc: toml_edit::DocumentMut = elk.parse().unwrap();
    doc.remove("data_dir");
    doc.remove("api");
    doc["sources"]["model_servers"]["include"] =
        toml_edit::value(toml_edit::Array::from_iter([samples
            .join("*.log")
            .display()
            .to_string()]));
    doc["sources"]["model_servers"]["read_from"] = toml_edit::value("beginning");
    doc["sinks"]["elasticsearch"]["endpoints"] =
        toml_edit::value(toml_edit::Array::from_iter([es.url()]));
    let text = doc
        .to_string()
        .replace("${ES_USER:-elastic}", "elastic")
        .replace("${ES_PASSWORD:-changeme}", "changeme");
    let text = Regex::new(r"\$\{[A-Z_]+:-([^}]*)\}").unwrap().replace_all(&text, "$1").into_owned();
    let elk_dir = dir.path().join("elk");
    std::fs::create_dir_all(&elk_dir).unwrap();
    let weir = Weir::start(&elk_dir, &text);
    // torchserve.log holds 4 events (2 access lines, an error with its traceback, a JSON
    // line); access_log.log one per line.
    let access = std::fs::read_to_string(samples.join("access_log.log")).unwrap().lines().count();
    let events = 4 + access;
    assert!(
        wait_for(Duration::from_secs(30), || es.state().doc_count() >= events),
        "{}",
        weir.stderr()
    );
    weir.stop();

    // Drift reports of the samples' predictions, and dead letters, into Elasticsearch.
    let monitoring_dir = dir.path().join("monitoring");
    std::fs::create_dir_all(&monitoring_dir).unwrap();
    let es_sink = |id: &str, url: &str, inputs: &str| {
        format!(
            "[sinks.{id}]\ntype = \"elasticsearch\"\ninputs = {inputs}\nendpoints = [\"{url}\"]\nmode = \"data_stream\"\ndata_stream.dataset = \"model_serving\"\n\n"
        )
    };
    let poisoned =
        EsServer::start_with(EsState { poison_field: Some("label".into()), ..EsState::default() });
    let pipeline = format!(
        "[dead_letter]\nsink = \"dead_letters\"\n\n[sources.predictions]\ntype = \"file\"\ninclude = [\"{p}\"]\n\n[sources.labels]\ntype = \"file\"\ninclude = [\"{l}\"]\n\n[transforms.inference]\ntype = \"parse_model_log\"\ninputs = [\"predictions\"]\n\n[transforms.labels_json]\ntype = \"parse_json\"\ninputs = [\"labels\"]\n\n[transforms.drift]\ntype = \"drift\"\ninputs = [\"inference\"]\nreferences = [\"{r}\"]\nwindow.count = 100\nmin_samples = 50\nfeature_events = true\n\n{}{}{}",
        es_sink("reports", &es.url(), "[\"drift\"]"),
        es_sink("labels_out", &poisoned.url(), "[\"labels_json\"]"),
        es_sink("dead_letters", &dlq.url(), "[]"),
        p = samples.join("predictions.jsonl").display(),
        l = samples.join("labels.jsonl").display(),
        r = root().join("deploy/profiles/churn-xgb-3.profile.json").display(),
    );
    let weir = Weir::start(&monitoring_dir, &pipeline);
    let docs = |action: &str| {
        es.state().all_docs().iter().filter(|d| d["event"]["action"] == action).count()
    };
    let drift_docs = || docs("drift_window");
    // Each window's report is followed by its features' events: the churn profile has three.
    assert!(
        wait_for(Duration::from_secs(60), || drift_docs() >= 2
            && docs("drift_feature") >= 2 * 3
            && dlq.state().doc_count() >= 100),
        "drift reports {}, dead letters {}:\n{}",
        drift_docs(),
        dlq.state().doc_count(),
        weir.stderr()
    );
    weir.stop();

    let mut written = BTreeSet::new();
    for d in es.state().all_docs().into_iter().chain(dlq.state().all_docs()) {
        paths(d, "", &mut written);
    }
    // Multi-fields the index template declares.
    let template = weir::setup::ecs_mappings();
    let keyword_of = |f: &str| {
        f.strip_suffix(".keyword").is_some_and(|base| {
            let pointer =
                format!("/properties/{}/fields/keyword", base.replace('.', "/properties/"));
            written.contains(base) && template.pointer(&pointer).is_some()
        })
    };
    let read = fields_read();
    assert!(read.len() > 30, "{read:?}");
    let unknown: Vec<&(String, String)> =
        read.iter().filter(|(_, f)| !written.contains(f) && !keyword_of(f)).collect();
    assert!(unknown.is_empty(), "fields no document has: {unknown:?}\nwritten: {written:?}");
}
