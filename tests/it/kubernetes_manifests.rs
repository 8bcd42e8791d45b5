//! `deploy/kubernetes/`: every manifest is valid against the Kubernetes API's schemas
//! (`kubernetes-validate --strict`, offline, from the project's `.venv`), the pieces refer to
//! each other by the right names, the RBAC grants reading pods and nothing else, and the
//! ConfigMap's pipeline passes `weir validate`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{test_python, validate};

fn manifests() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every document of the manifests, as JSON (read by PyYAML, which kubernetes-validate uses).
fn documents(files: &[PathBuf]) -> Vec<Value> {
    let script = "import json, sys, yaml\nprint(json.dumps([d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]))";
    let out = Command::new(test_python()).arg("-c").arg(script).args(files).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn kubernetes_manifests_are_valid_and_fit_together() {
    let files = manifests();
    let validator = test_python().with_file_name("kubernetes-validate");
    assert!(
        validator.exists(),
        "kubernetes-validate is missing: scripts/install-test-deps.sh installs it"
    );
    let out = Command::new(&validator).args(["--strict", "--quiet"]).args(&files).output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !said.contains("ERROR"), "kubernetes-validate:\n{said}");

    let docs = documents(&files);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for kind in
        ["DaemonSet", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Service"]
    {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    // Reading pods, nothing more.
    let role = find(&docs, "ClusterRole");
    assert_eq!(
        role["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}])
    );
    let binding = find(&docs, "ClusterRoleBinding");
    let ds = find(&docs, "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(binding["subjects"][0]["name"], pod["serviceAccountName"]);
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);

    let c = &pod["containers"][0];
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health/live");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/health");
    for r in ["requests", "limits"] {
        assert!(c["resources"][r]["memory"].is_string() && c["resources"][r]["cpu"].is_string());
    }
    // Host paths: the logs read-only, the data directory on the node.
    let mounts = c["volumeMounts"].as_array().unwrap();
    let mount = |path: &str| mounts.iter().find(|m| m["mountPath"] == path).unwrap();
    assert_eq!(mount("/var/log/pods")["readOnly"], true);
    assert_eq!(mount("/var/lib/docker/containers")["readOnly"], true);
    let volumes = pod["volumes"].as_array().unwrap();
    let volume = |name: &Value| volumes.iter().find(|v| v["name"] == *name).unwrap();
    assert_eq!(volume(&mount("/var/lib/weir")["name"])["hostPath"]["path"], "/var/lib/weir");
    let config_volume = volume(&mount("/etc/weir")["name"]);

    // The ConfigMap the DaemonSet mounts holds the pipeline it runs, and that pipeline
    // validates, listening where the probes and the Service look.
    let cm = find(&docs, "ConfigMap");
    assert_eq!(config_volume["configMap"]["name"], cm["metadata"]["name"]);
    assert_eq!(c["args"], serde_json::json!(["run", "--config", "/etc/weir/pipeline.toml"]));
    let pipeline = cm["data"]["pipeline.toml"].as_str().unwrap();
    for part in [
        "type = \"kubernetes_logs\"",
        "type = \"parse_model_log\"",
        "type = \"loki\"",
        "type = \"elasticsearch\"",
        "address = \"0.0.0.0:9598\"",
        "data_dir = \"/var/lib/weir\"",
    ] {
        assert!(pipeline.contains(part), "the pipeline has no `{part}`");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pipeline.toml");
    std::fs::write(&file, pipeline).unwrap();
    let (code, out) = validate(&[file.as_path()]);
    assert_eq!(code, 0, "{out}");

    let port = &c["ports"][0];
    assert_eq!(port["containerPort"], 9598);
    let svc = find(&docs, "Service");
    assert_eq!(svc["metadata"]["annotations"]["prometheus.io/scrape"], "true");
    assert_eq!(svc["metadata"]["annotations"]["prometheus.io/port"], "9598");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], port["name"]);
    assert_eq!(svc["spec"]["selector"], ds["spec"]["template"]["metadata"]["labels"]);
}
