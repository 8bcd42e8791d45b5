#!/usr/bin/env bash
# Installs what building and testing weir needs on a fresh Debian machine, when it is missing:
# the C toolchain and libraries of the bundled librdkafka, the real peers the tests talk to
# (rsyslog, logger, docker-compose for its `config` check), the Kafka test broker and cargo-deb.
# Idempotent: a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi
}

# Debian packages the tests use, by the command that shows each is there.
missing=()
command -v logger >/dev/null || missing+=(bsdutils)
# Model monitoring: Prometheus scrapes weir's /metrics, Alertmanager receives its alerts.
command -v prometheus >/dev/null || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
# Python's venv module, for the SciPy and MLflow peers below.
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
# The disk-full tests mount a small tmpfs under a disk buffer (they need root to do so).
command -v mount >/dev/null || missing+=(mount)
# `docker-compose config` checks docker-compose.yml (no Docker engine needed).
command -v docker-compose >/dev/null || missing+=(docker-compose)
# `systemd-analyze verify` checks deploy/systemd/weir.service.
command -v systemd-analyze >/dev/null || missing+=(systemd)
# The Debian package's test: cargo-deb computes its dependencies with dpkg-shlibdeps
# (dpkg-dev), and the package depends on adduser.
command -v dpkg-shlibdeps >/dev/null || missing+=(dpkg-dev)
command -v adduser >/dev/null || [ -x /usr/sbin/adduser ] || missing+=(adduser)
# `weir completions` scripts are parsed by their shells; `weir man` pages rendered by man.
command -v zsh >/dev/null || missing+=(zsh)
command -v fish >/dev/null || missing+=(fish)
command -v man >/dev/null || missing+=(man-db)
# The syslog tests start an rsyslog forwarder of their own (not the system's service).
[ -x /usr/sbin/rsyslogd ] || command -v rsyslogd >/dev/null || missing+=(rsyslog)
# The socket sink's TLS test receives with rsyslog's OpenSSL network stream driver.
dpkg -s rsyslog-openssl >/dev/null 2>&1 || missing+=(rsyslog-openssl)
# `weir top` is tested in a terminal that tmux emulates.
command -v tmux >/dev/null || missing+=(tmux)
# Building rdkafka compiles the bundled librdkafka (C compiler, make) and OpenSSL from source
# (its Configure is Perl and needs IPC::Cmd), and links zlib. Debian's own librdkafka is not
# used: it is too old for rdkafka 0.39.
command -v cc >/dev/null || missing+=(gcc)
command -v c++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
command -v pkg-config >/dev/null || missing+=(pkg-config)
perl -MIPC::Cmd -e 1 >/dev/null 2>&1 || missing+=(perl)
dpkg -s zlib1g-dev >/dev/null 2>&1 || missing+=(zlib1g-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python peers, in a virtual environment of the project's own: SciPy (the reference for the
# drift statistics), an MLflow tracking server, and the Python servers whose logs
# parse_model_log reads (FastAPI under uvicorn, Flask under gunicorn and werkzeug). The tests
# find it as .venv/bin/python.
if ! .venv/bin/python -c 'import scipy, mlflow, fastapi, uvicorn, gunicorn, flask' >/dev/null 2>&1; then
  echo "creating .venv with scipy, mlflow, fastapi, uvicorn, gunicorn and flask"
  python3 -m venv .venv
  .venv/bin/pip install -q scipy numpy mlflow fastapi uvicorn gunicorn flask
fi
# kubernetes-validate checks deploy/kubernetes/ against the Kubernetes API's schemas, which
# it ships (no cluster, nothing fetched at run time).
if ! [ -x .venv/bin/kubernetes-validate ]; then
  echo "installing kubernetes-validate into .venv"
  .venv/bin/pip install -q kubernetes-validate
fi

# The OpenTelemetry Python SDK and its OTLP exporters (HTTP and gRPC): the app of the
# opentelemetry source's tests logs through them.
if ! .venv/bin/python -c 'import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http, opentelemetry.exporter.otlp.proto.grpc' >/dev/null 2>&1; then
  echo "installing the OpenTelemetry SDK and OTLP exporters into .venv"
  .venv/bin/pip install -q "opentelemetry-sdk==1.45.*" "opentelemetry-exporter-otlp-proto-http==1.45.*" \
    "opentelemetry-exporter-otlp-proto-grpc==1.45.*"
fi

# The Kafka tests start a Kafka-protocol broker of their own: tansu 0.6.0 with in-memory
# storage (`dynostore`), and SQLite storage (`libsql`) for the SASL test, whose users must
# outlive a restart of the broker. Building it takes about ten minutes, once; a tansu that
# cargo installed without `libsql` is built again.
tansu_features() {
  python3 -c 'import json, sys
installs = json.load(open(sys.argv[1]))["installs"]
print(" ".join(f for k, v in installs.items() if k.startswith("tansu 0.6.0 ") for f in v["features"]))' \
    "${CARGO_HOME:-$HOME/.cargo}/.crates2.json" 2>/dev/null
}
if { ! command -v tansu >/dev/null && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; } ||
   { tansu_features | grep -qw dynostore && ! tansu_features | grep -qw libsql; }; then
  echo "installing the Kafka test broker (tansu 0.6.0); this takes a while"
  cargo install tansu --version 0.6.0 --locked --force --features dynostore,libsql \
    --target-dir "${TMPDIR:-/tmp}/weir-tansu-build"
fi


# `cargo deb` builds the Debian package the tests install (scripts/check-deb.sh). Pinned: the
# tests package the debug build, which later versions mean to refuse. About 2 minutes of CPU.
if ! command -v cargo-deb >/dev/null && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-deb" ]; then
  echo "installing cargo-deb 3.8.0"
  cargo install cargo-deb --version 3.8.0 --locked --target-dir "${TMPDIR:-/tmp}/weir-cargo-deb-build"
fi
