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
# The syslog tests start an rsyslog forwarder of their own (not the system's service).
[ -x /usr/sbin/rsyslogd ] || command -v rsyslogd >/dev/null || missing+=(rsyslog)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq "${missing[@]}"
fi

cargo test --all-targets "$@"
