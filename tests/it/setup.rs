//! `weir setup` against the Elasticsearch and Kibana stand-ins: what it installs, and that a
//! second run changes nothing.

use std::process::Command;

use crate::es_server::EsServer;
use crate::kibana_server::KibanaServer;
use crate::support::weir_bin;

fn setup(es: &EsServer, kibana: &KibanaServer) -> (i32, String) {
    let pipeline =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/model-server-to-elk.toml");
    let out = Command::new(weir_bin())
        .args(["setup", "--config"])
        .arg(&pipeline)
        .args(["--kibana", &kibana.url()])
        .env("ES_ENDPOINT", es.url())
        .output()
        .expect("run weir setup");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn installs_template_policy_and_dashboard_then_changes_nothing() {
    let es = EsServer::start();
    let kibana = KibanaServer::start();
    let (code, out) = setup(&es, &kibana);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Elasticsearch 8.15.0"), "{out}");
    assert!(out.contains("ILM policy weir-elasticsearch: created"), "{out}");
    assert!(
        out.contains("index template weir-elasticsearch for logs-model_serving-*: created"),
        "{out}"
    );
    assert!(out.contains("Kibana dashboard \"Model serving\": created"), "{out}");
    {
        let st = es.state();
        let t = &st.index_templates["weir-elasticsearch"];
        assert_eq!(t["index_patterns"], serde_json::json!(["logs-model_serving-*"]));
        assert_eq!(t["data_stream"], serde_json::json!({}));
        assert!(t["priority"].as_u64().unwrap() > 100, "must win over the built-in logs template");
        let props = &t["template"]["mappings"]["properties"];
        assert_eq!(props["@timestamp"]["type"], "date");
        assert_eq!(props["log"]["properties"]["level"]["type"], "keyword");
        assert_eq!(props["service"]["properties"]["name"]["type"], "keyword");
        assert_eq!(t["template"]["settings"]["index.lifecycle.name"], "weir-elasticsearch");
        assert!(st.ilm_policies["weir-elasticsearch"]["policy"]["phases"]["delete"].is_object());
    }
    let objects: Vec<(String, String)> = kibana.state().objects.keys().cloned().collect();
    assert_eq!(objects.iter().filter(|(k, _)| k == "visualization").count(), 4);
    assert!(objects.iter().any(|(k, _)| k == "index-pattern"));
    let dashboard = kibana.state().objects
        [&("dashboard".to_string(), "weir-elasticsearch-model-serving".to_string())]
        .clone();
    let panels: serde_json::Value =
        serde_json::from_str(dashboard["attributes"]["panelsJSON"].as_str().unwrap()).unwrap();
    assert_eq!(panels.as_array().unwrap().len(), 4);
    assert_eq!(dashboard["references"].as_array().unwrap().len(), 4);

    // Again: nothing to do.
    let writes = kibana.state().writes;
    let (code, out) = setup(&es, &kibana);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("created") && !out.contains("updated"), "{out}");
    assert_eq!(out.matches("unchanged").count(), 8, "{out}");
    assert_eq!(kibana.state().writes, writes);

    // A template changed by hand is put back.
    es.state().index_templates.get_mut("weir-elasticsearch").unwrap()["priority"] =
        serde_json::json!(1);
    es.state().index_templates.get_mut("weir-elasticsearch").unwrap()["_meta"]["weir_hash"] =
        serde_json::json!("x");
    let (code, out) = setup(&es, &kibana);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("index template weir-elasticsearch for logs-model_serving-*: updated"),
        "{out}"
    );
    assert_eq!(es.state().index_templates["weir-elasticsearch"]["priority"], 200);
}

#[test]
fn an_unreachable_elasticsearch_is_a_clear_error() {
    let kibana = KibanaServer::start();
    let pipeline =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/model-server-to-elk.toml");
    let out = Command::new(weir_bin())
        .args(["setup", "--config"])
        .arg(&pipeline)
        .args(["--kibana", &kibana.url()])
        .env("ES_ENDPOINT", format!("http://127.0.0.1:{}", crate::support::free_port()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("error: sinks.elasticsearch:") && text.contains("cannot connect"),
        "{text}"
    );
}
