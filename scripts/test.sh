#!/usr/bin/env bash
# Runs every test of weir on a fresh Debian machine: installs the build tools and the real
# peers the tests talk to (when they are missing), then runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-test-deps.sh
cargo test --all-targets "$@"
