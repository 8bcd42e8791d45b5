//! What ships beside the binary: every example pipeline passes `weir validate`, and
//! `docker-compose.yml` is valid (`docker-compose config`, Debian's docker-compose; no engine
//! is needed), every file it mounts from the project exists, and every pipeline a service runs
//! passes `weir validate`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::validate;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_example_pipeline_validates() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        let (code, out) = validate(&[f.as_path()]);
        assert_eq!(code, 0, "{}:\n{out}", f.display());
        assert!(out.contains("Configuration OK"), "{}:\n{out}", f.display());
    }
}

/// Host paths of the project's bind mounts (`- ./x:/y[:ro]`), and the pipeline files the
/// services are told to run (`/etc/weir/pipelines/NAME`).
fn mounts_and_pipelines(compose: &str) -> (Vec<String>, Vec<String>) {
    let mut mounts = Vec::new();
    let mut pipelines = Vec::new();
    for line in compose.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("- ") {
            // `${VAR:-./default}` mounts count by their default.
            let rest = rest.trim_matches('"');
            let host = if let Some(var) = rest.strip_prefix("${") {
                var.split_once(":-").and_then(|(_, d)| d.split_once('}')).map(|(d, _)| d)
            } else {
                rest.split(':').next()
            };
            if let Some(h) = host.filter(|h| h.starts_with("./")) {
                mounts.push(h.to_string());
            }
        }
        let mut s = t;
        while let Some(i) = s.find("/etc/weir/pipelines/") {
            let name: String = s[i + "/etc/weir/pipelines/".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect();
            pipelines.push(name);
            s = &s[i + 1..];
        }
    }
    (mounts, pipelines)
}

#[test]
fn docker_compose_is_valid_and_what_it_mounts_exists() {
    let status = Command::new("docker-compose")
        .args(["-f", "docker-compose.yml", "config", "-q"])
        .current_dir(root())
        .output()
        .expect("docker-compose is not installed: scripts/test.sh installs it (Debian package docker-compose)");
    assert!(
        status.status.success(),
        "docker-compose config:\n{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let compose = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let (mounts, pipelines) = mounts_and_pipelines(&compose);
    assert!(mounts.iter().any(|m| m == "./pipelines"), "{mounts:?}");
    for m in &mounts {
        assert!(root().join(m).exists(), "docker-compose.yml mounts {m}, which does not exist");
    }
    assert!(pipelines.len() >= 3, "{pipelines:?}");
    for p in &pipelines {
        let path = root().join("pipelines").join(p);
        assert!(path.exists(), "a service runs {p}, which is not in pipelines/");
        let (code, out) = validate(&[Path::new(&path)]);
        assert_eq!(code, 0, "{p}:\n{out}");
    }
    // The Dockerfile and the configuration files the stack reads are in place.
    for f in [
        "Dockerfile",
        "deploy/prometheus/prometheus.yml",
        "deploy/prometheus/alerts.yml",
        "deploy/alertmanager/alertmanager.yml",
        "deploy/grafana/provisioning/datasources/datasources.yml",
        "deploy/grafana/provisioning/dashboards/dashboards.yml",
    ] {
        assert!(root().join(f).is_file(), "{f} is missing");
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/dashboards/weir.json")).unwrap(),
    )
    .expect("the Grafana dashboard is JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 5));
}

/// `docker-compose config` (anchors and variables resolved) as JSON, through the YAML reader
/// of Debian's docker-compose itself (python3-yaml, one of its dependencies).
fn resolved_compose() -> serde_json::Value {
    let config = Command::new("docker-compose")
        .args(["-f", "docker-compose.yml", "config"])
        .current_dir(root())
        .output()
        .expect("docker-compose");
    assert!(config.status.success(), "{}", String::from_utf8_lossy(&config.stderr));
    let mut py = Command::new("/usr/bin/python3")
        .args(["-c", "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with yaml (a dependency of docker-compose)");
    std::io::Write::write_all(&mut py.stdin.take().unwrap(), &config.stdout).unwrap();
    let out = py.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).expect("docker-compose config as JSON")
}

#[test]
fn the_compose_stack_comes_up_in_order_on_one_weir_image() {
    let c = resolved_compose();
    let services = c["services"].as_object().unwrap();
    // The peers weir and Grafana wait for say when they are ready.
    for s in ["elasticsearch", "kibana", "loki", "grafana", "prometheus", "alertmanager"] {
        let test = &services[s]["healthcheck"]["test"];
        assert!(test.as_array().is_some_and(|t| t.len() >= 2), "{s} has no health check: {test}");
    }
    // Every dependency waits for health (or, on weir-setup, for its success).
    for (name, service) in services {
        let Some(deps) = service.get("depends_on") else { continue };
        let deps =
            deps.as_object().unwrap_or_else(|| panic!("{name}: depends_on without conditions"));
        for (dep, cond) in deps {
            let want = if dep == "weir-setup" {
                "service_completed_successfully"
            } else {
                "service_healthy"
            };
            assert_eq!(cond["condition"], want, "{name} -> {dep}");
            if want == "service_healthy" {
                assert!(
                    services[dep].get("healthcheck").is_some(),
                    "{name} waits for {dep}'s health, which it does not check"
                );
            }
        }
    }
    for dep in ["elasticsearch", "kibana"] {
        assert!(
            services["weir-setup"]["depends_on"].get(dep).is_some(),
            "weir-setup must wait for {dep}"
        );
    }
    // One weir image for every weir service.
    let weir: Vec<&String> = services.keys().filter(|k| k.starts_with("weir-")).collect();
    assert!(weir.len() >= 4, "{weir:?}");
    let images: std::collections::BTreeSet<String> =
        weir.iter().map(|w| services[w.as_str()]["image"].to_string()).collect();
    assert_eq!(images.len(), 1, "{images:?}");
    // The syslog reader may read a root:adm 0640 file.
    assert_eq!(services["weir-loki"]["group_add"], serde_json::json!(["4"]));
    // Prometheus scrapes every weir service that runs a pipeline.
    let prometheus =
        std::fs::read_to_string(root().join("deploy/prometheus/prometheus.yml")).unwrap();
    for w in weir.iter().filter(|w| w.as_str() != "weir-setup") {
        assert!(prometheus.contains(&format!("\"{w}:9598\"")), "Prometheus does not scrape {w}");
    }
}

#[test]
fn the_mount_scanner_reads_the_forms_used() {
    let (m, p) = mounts_and_pipelines(
        "    volumes:\n      - ./pipelines:/etc/weir/pipelines:ro\n      - ${LOGS:-./deploy/x}:/var/log:ro\n      - /var/log:/h:ro\n      - es-data:/data\n    command: [\"run\", \"--config\", \"/etc/weir/pipelines/a.toml\"]\n",
    );
    assert_eq!(m, ["./pipelines", "./deploy/x"]);
    assert_eq!(p, ["a.toml"]);
}

/// `deploy/systemd/weir.service` keeps its hardening and passes `systemd-analyze verify`
/// (Debian's `systemd` package) without a warning. Verify checks that the commands exist, so
/// the unit is checked with `/usr/bin/weir` pointing at the binary under test.
#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(root().join("deploy/systemd/weir.service")).unwrap();
    for line in [
        "User=weir",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/weir",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ExecStart=/usr/bin/weir run --config /etc/weir/weir.toml",
    ] {
        assert!(unit.lines().any(|l| l == line), "weir.service has no `{line}`");
    }
    let analyze = crate::support::require_command("systemd-analyze");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.service");
    let bin = crate::support::weir_bin();
    std::fs::write(&path, unit.replace("/usr/bin/weir", &bin.display().to_string())).unwrap();
    let out = Command::new(analyze).args(["verify", "--man=no"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify:\n{stderr}");
}
