#!/usr/bin/env bash
# Builds weir's Debian package with `cargo deb`, installs it with `dpkg -i`, runs
# `weir validate` and `weir run` as the package lays them out (as the user weir, on
# /etc/weir/weir.toml), then removes and purges it. Needs root and cargo-deb
# (`cargo install cargo-deb --locked`).
#
#   scripts/check-deb.sh                      # the release package (cargo build --release)
#   scripts/check-deb.sh --no-build           # the same, around the release build already made
#   scripts/check-deb.sh --profile dev        # the same package around the debug build
#
# The test suite runs the second form on the binary it has just built (tests/it/deploy.rs): a
# release build with fat LTO takes longer than the rest of CI.
set -euo pipefail
cd "$(dirname "$0")/.."

deb_args=()
case "${1:-}" in
  --profile) deb_args=(--no-build --profile "${2:?--profile needs a profile}") ;;
  --no-build) deb_args=(--no-build) ;;
  "") ;;
  *) echo "usage: $0 [--no-build | --profile PROFILE]" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "check-deb: needs root (dpkg -i)" >&2; exit 2; }
command -v cargo-deb >/dev/null || { echo "check-deb: cargo-deb is missing: cargo install cargo-deb --locked" >&2; exit 2; }

# The check purges what it installed, data_dir included: it does not touch a machine where
# weir is installed or has left data (exit 3).
if dpkg -s weir >/dev/null 2>&1 || [ -e /var/lib/weir ] || [ -e /etc/weir/weir.toml ]; then
  echo "check-deb: weir is installed here, or /var/lib/weir or /etc/weir/weir.toml exists; not checking" >&2
  exit 3
fi

work=$(mktemp -d)
weir_pid=
cleanup() {
  [ -n "$weir_pid" ] && kill -KILL "$weir_pid" 2>/dev/null || true
  dpkg --purge weir >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# dpkg allows one instance at a time: wait (at most ten minutes) for another to finish.
dpkg_wait() {
  local out
  for _ in $(seq 600); do
    if out=$("$@" 2>&1); then printf '%s\n' "$out"; return 0; fi
    case "$out" in *"dpkg frontend lock"*|*"dpkg status database is locked"*) sleep 1 ;; *)
      printf '%s\n' "$out" >&2; return 1 ;; esac
  done
  echo "check-deb: dpkg stayed locked" >&2; return 1
}

echo "== cargo deb ${deb_args[*]}"
cargo deb "${deb_args[@]}" --fast --output "$work/"
deb=$(ls "$work"/*.deb)
dpkg-deb --field "$deb" Package Version Architecture Depends Installed-Size
dpkg-deb --contents "$deb" | awk '{print $1, $2, $6}'

echo "== dpkg -i"
dpkg_wait dpkg -i "$deb"
echo "== as installed"
id weir
stat -c '%n %U:%G %a' /usr/bin/weir /etc/weir/weir.toml /var/lib/weir
unit=$(dpkg -L weir | grep '/weir.service$')
echo "unit: $unit"
echo "== systemd-analyze verify $unit"
systemd-analyze verify --man=no "$unit"
echo "(no output: no warnings)"

echo "== weir validate (as weir)"
runuser -u weir -- /usr/bin/weir validate --config /etc/weir/weir.toml

echo "== weir run (as weir, the default pipeline)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
chmod 0755 "$work"
# setpriv executes weir itself (runuser would stay as its parent): SIGTERM reaches weir.
setpriv --reuid=weir --regid=weir --init-groups env WEIR_API_ADDRESS="127.0.0.1:$port" WEIR_LOG=info \
  /usr/bin/weir run --config /etc/weir/weir.toml >"$work/stdout" 2>"$work/stderr" &
weir_pid=$!
live() (
  exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
  printf 'GET /health/live HTTP/1.0\r\n\r\n' >&3
  head -n 1 <&3 | grep -q ' 200 '
) 2>/dev/null
# Up to two minutes for the first events on a loaded machine; it takes about a second.
for _ in $(seq 600); do
  if live && grep -q '"model-serving"' "$work/stdout"; then break; fi
  kill -0 "$weir_pid" 2>/dev/null || break
  sleep 0.2
done
live || { echo "check-deb: weir is not alive"; cat "$work/stderr"; exit 1; }
grep -q '"model-serving"' "$work/stdout" || { echo "check-deb: no events"; exit 1; }
echo "alive on 127.0.0.1:$port; $(wc -l <"$work/stdout") events printed; the first:"
head -n 1 "$work/stdout" | cut -c1-300
kill -TERM "$weir_pid"
status=0
wait "$weir_pid" || status=$?
weir_pid=
echo "weir run exited with $status after SIGTERM; its log:"
cat "$work/stderr"
[ "$status" -eq 0 ]

echo "== dpkg -r weir"
dpkg_wait dpkg -r weir
fail() { echo "check-deb: $*" >&2; exit 1; }
[ ! -e /usr/bin/weir ] || fail "/usr/bin/weir is still there"
[ -d /var/lib/weir ] || fail "/var/lib/weir went with dpkg -r (only --purge removes it)"
echo "/usr/bin/weir removed, /var/lib/weir kept"
echo "== dpkg --purge weir"
dpkg_wait dpkg --purge weir
[ ! -e /var/lib/weir ] || fail "/var/lib/weir is still there"
[ ! -e /etc/weir/weir.toml ] || fail "/etc/weir/weir.toml is still there"
echo "/var/lib/weir and /etc/weir/weir.toml removed"
echo "check-deb: OK"
