#!/usr/bin/env bash
# Runs every test of weir on a fresh Debian machine: installs the real peers the tests talk
# to (when they are missing), then runs the whole test suite.
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
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python peers, in a virtual environment of the project's own: SciPy (the reference for the
# drift statistics) and an MLflow tracking server. The tests find it as .venv/bin/python.
if ! .venv/bin/python -c 'import scipy, mlflow' >/dev/null 2>&1; then
  echo "creating .venv with scipy and mlflow"
  python3 -m venv .venv
  .venv/bin/pip install -q scipy numpy mlflow
fi

cargo test --all-targets "$@"
