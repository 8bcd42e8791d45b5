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
    for s in ["elasticsearch", "kibana", "loki", "grafana", "prometheus", "alertmanager", "mlflow"]
    {
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
    // Every peer a pipeline names by a variable whose default is on the loopback is given to
    // the service that runs it: a service of the stack, waited for (weir-monitoring once lacked
    // MLflow and was unhealthy for it).
    let loopback =
        regex::Regex::new(r"\$\{([A-Z_]+):-https?://(?:127\.0\.0\.1|localhost)").unwrap();
    let mut peers = 0;
    for w in &weir {
        let service = &services[w.as_str()];
        let command: Vec<&str> =
            service["command"].as_array().unwrap().iter().filter_map(|c| c.as_str()).collect();
        let config = command.iter().position(|c| *c == "--config").map(|i| command[i + 1]).unwrap();
        let file = config.strip_prefix("/etc/weir/pipelines/").unwrap();
        let pipeline = std::fs::read_to_string(root().join("pipelines").join(file)).unwrap();
        for var in loopback.captures_iter(&pipeline) {
            let url = service["environment"][&var[1]].as_str();
            let url = url.unwrap_or_else(|| panic!("{w} does not set {} for {file}", &var[1]));
            let host = url.split("://").nth(1).and_then(|r| r.split([':', '/']).next()).unwrap();
            assert!(services.contains_key(host), "{w}: {} = {url} is not in the stack", &var[1]);
            assert!(service["depends_on"].get(host).is_some(), "{w} does not wait for {host}");
            peers += 1;
        }
    }
    assert!(peers >= 6, "{peers} peers found");
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

fn dockerfile() -> String {
    std::fs::read_to_string(root().join("Dockerfile")).unwrap()
}

/// The Dockerfile's instructions, continuation lines joined, comments left out.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.is_empty()) {
        match line.strip_suffix('\\') {
            Some(head) => cur.push_str(head),
            None => {
                cur.push_str(line);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    out
}

/// What the image's build does that can be checked without a Docker engine: it builds weir
/// once, with the command users run, from the checked-in tree, strips it and ships it alone
/// into a slim runtime stage run as a user of its own; every compose service uses that image.
#[test]
fn the_image_is_one_stripped_release_build_shared_by_every_service() {
    let steps = instructions(&dockerfile());
    let froms: Vec<&String> = steps.iter().filter(|s| s.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage: {froms:?}");
    assert!(froms[0].ends_with(" AS build"), "{}", froms[0]);
    assert_eq!(froms[1], "FROM debian:bookworm-slim");
    let runs: Vec<&String> = steps.iter().filter(|s| s.starts_with("RUN ")).collect();
    let builds: Vec<&String> = runs.iter().copied().filter(|r| r.contains("cargo ")).collect();
    assert_eq!(builds.len(), 1, "one cargo build: {builds:?}");
    assert_eq!(builds[0].matches("cargo ").count(), 1, "{}", builds[0]);
    assert!(builds[0].contains("cargo build --release --locked"), "{}", builds[0]);
    assert!(builds[0].contains("strip --strip-all -o /weir target/release/weir"), "{}", builds[0]);
    let runtime = steps.iter().position(|s| s == froms[1]).unwrap();
    let copies: Vec<&String> = steps[runtime..].iter().filter(|s| s.starts_with("COPY ")).collect();
    // From the build stage: the stripped binary and the CA bundle, nothing else.
    let from_build: Vec<&str> =
        copies.iter().filter(|c| c.contains("--from=")).map(|c| c.as_str()).collect();
    assert_eq!(
        from_build,
        [
            "COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt",
            "COPY --from=build /weir /usr/bin/weir",
        ],
        "{copies:?}"
    );
    assert!(steps.iter().any(|s| s == "USER weir"));
    // The API's default port is the one exposed and the one the image binds.
    assert!(steps.iter().any(|s| s == "EXPOSE 9598"));
    assert!(steps.iter().any(|s| s == "ENV WEIR_API_ADDRESS=0.0.0.0:9598"));

    // The build context is the checked-in tree: .dockerignore leaves out no tracked file.
    let tracked = Command::new("git").args(["ls-files"]).current_dir(root()).output().unwrap();
    assert!(tracked.status.success());
    let tracked = String::from_utf8_lossy(&tracked.stdout).into_owned();
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    for pattern in ignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let hidden: Vec<&str> = tracked
            .lines()
            .filter(|f| *f == pattern || f.starts_with(&format!("{pattern}/")))
            .collect();
        assert!(hidden.is_empty(), ".dockerignore's `{pattern}` leaves out {hidden:?}");
    }

    // Every weir service: the same image from the same build (Compose builds it once).
    let c = resolved_compose();
    let services = c["services"].as_object().unwrap();
    let weir: Vec<&serde_json::Value> =
        services.iter().filter(|(k, _)| k.starts_with("weir-")).map(|(_, v)| v).collect();
    assert!(weir.len() >= 4);
    for w in &weir {
        assert_eq!(w["image"], weir[0]["image"]);
        assert_eq!(w["build"], weir[0]["build"]);
    }
    let context = weir[0]["build"]["context"].as_str().expect("a build context");
    assert_eq!(
        std::fs::canonicalize(context).unwrap(),
        std::fs::canonicalize(root()).unwrap(),
        "the image builds from the project's root"
    );
}

/// The shared libraries the runtime stage must provide (see the Dockerfile): glibc's, libgcc_s
/// and zlib, all in debian:bookworm-slim. A dependency that starts linking another library
/// dynamically (libsasl2, the system's libssl) fails here until the image installs it.
#[test]
fn weir_links_only_libraries_the_runtime_image_has() {
    let out = Command::new("ldd").arg(crate::support::weir_bin()).output().expect("ldd");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let allowed = [
        "linux-vdso.so.1",
        "libc.so.6",
        "libm.so.6",
        "libgcc_s.so.1",
        "libz.so.1",
        "libdl.so.2",
        "libpthread.so.0",
        "librt.so.1",
    ];
    let mut seen = Vec::new();
    for line in text.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let base = name.rsplit('/').next().unwrap_or(name);
        if base.starts_with("ld-linux") {
            continue;
        }
        assert!(allowed.contains(&base), "weir links {base}, which the image lacks:\n{text}");
        seen.push(base.to_string());
    }
    assert!(seen.iter().any(|l| l == "libc.so.6"), "{text}");
}

/// The image's health check, as the Dockerfile writes it, run against weir stripped as the
/// image's build strips it, on the default pipeline the image runs: it fails while nothing
/// listens, passes once weir is up, and fails again after weir has stopped.
#[test]
fn the_image_healthcheck_passes_on_the_stripped_binary_running_the_default_pipeline() {
    let steps = instructions(&dockerfile());
    let check = steps.iter().find(|s| s.starts_with("HEALTHCHECK ")).expect("a HEALTHCHECK");
    let json = &check[check.find("CMD [").expect("exec form") + 4..];
    let argv: Vec<String> = serde_json::from_str(json).expect("CMD as a JSON array");

    let dir = tempfile::tempdir().unwrap();
    let stripped = dir.path().join("weir");
    let status = Command::new("strip")
        .args(["--strip-all", "-o"])
        .arg(&stripped)
        .arg(crate::support::weir_bin())
        .status()
        .expect("strip (binutils)");
    assert!(status.success());
    let addr = format!("127.0.0.1:{}", crate::support::free_port());
    let probe = || {
        Command::new(&argv[0])
            .args(&argv[1..])
            .env("WEIR_API_ADDRESS", &addr)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(!probe(), "the health check passed with nothing listening");

    // The image's CMD runs /etc/weir/weir.toml, the default pipeline; data_dir in the test's
    // directory instead of /var/lib/weir.
    let default = std::fs::read_to_string(root().join("pipelines/default.toml")).unwrap();
    let config = dir.path().join("weir.toml");
    std::fs::write(&config, format!("data_dir = {:?}\n{default}", dir.path().join("data")))
        .unwrap();
    let (code, out) = {
        let o = Command::new(&stripped).args(["validate", "--config"]).arg(&config).output();
        let o = o.unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    assert_eq!(code, Some(0), "{out}");
    let mut child = Command::new(&stripped)
        .args(["run", "--config"])
        .arg(&config)
        .env("WEIR_API_ADDRESS", &addr)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // 60 s: a stripped debug build starts in well under a second here; the margin is for a
    // loaded CI machine.
    let up = crate::support::wait_for(std::time::Duration::from_secs(60), probe);
    crate::support::signal(child.id(), "TERM");
    let exit = child.wait().unwrap();
    assert!(up, "the health check never passed against a running weir");
    assert!(exit.success(), "weir exited with {exit} after SIGTERM");
    assert!(!probe(), "the health check passed after weir stopped");
}

/// The Debian package (`cargo deb`), around the binary under test: `scripts/check-deb.sh`
/// installs it with `dpkg -i`, checks the user, the modes and the unit (`systemd-analyze
/// verify`), runs `weir validate` and `weir run` as the user weir on /etc/weir/weir.toml
/// until the default pipeline's events come out and `/health/live` answers, stops it with
/// SIGTERM, then removes and purges the package. Needs root (as the tmpfs tests do) and
/// cargo-deb (scripts/install-test-deps.sh installs it).
#[test]
fn the_debian_package_installs_runs_and_purges() {
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root_user {
        eprintln!("skipped: dpkg -i needs root");
        return;
    }
    crate::support::require_command("cargo-deb");
    // The package takes the binary cargo built for these tests (target/debug/weir).
    let out = Command::new("bash")
        .arg(root().join("scripts/check-deb.sh"))
        .args(["--profile", "dev"])
        .current_dir(root())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        eprintln!("skipped: {text}");
        return;
    }
    assert!(out.status.success(), "scripts/check-deb.sh --profile dev:\n{text}");
    for line in [
        "/etc/weir/weir.toml root:weir 640",
        "/var/lib/weir weir:weir 750",
        "unit: /usr/lib/systemd/system/weir.service",
        "Configuration OK",
        "weir run exited with 0 after SIGTERM; its log:",
        "/usr/bin/weir removed, /var/lib/weir kept",
        "check-deb: OK",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    let depends = text.lines().find(|l| l.starts_with("Depends: ")).unwrap_or_default();
    assert!(depends.contains("libc6") && depends.contains("adduser"), "{depends}");
}
