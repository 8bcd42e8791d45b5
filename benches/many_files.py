#!/usr/bin/env python3
"""Many idle files: the cost of a file source as the number of matched files grows.

Creates N one-line files matched by one glob, runs weir (file source -> file sink, text codec)
and reports:

- the time from start until every line has reached the sink (weir's own metrics, polled every
  100 ms; start-up included),
- peak RSS (VmHWM), and the file descriptors weir holds once every line is delivered
  (/proc/<pid>/fd) and the most seen while it was reading,
- idle CPU: the CPU time weir used over `--idle` seconds (default 30) after the last line,
  as a share of one core,
- that every line was written exactly once (the sink's file, read after weir stopped).

    cargo build --release && python3 benches/many_files.py --files 1000 --files 10000

The binary is target/release/weir, or the one named by WEIR_BIN. Extra file-source options go
in with --option (TOML, repeatable), e.g. --option 'max_open_files = 256'. The files are made
in a temporary directory (under $TMPDIR) and removed afterwards.
"""

import argparse
import collections
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
WEIR = os.environ.get("WEIR_BIN") or os.path.join(TARGET, "release", "weir")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sink_events(port):
    """Events the sink has received, from /metrics; None while weir is not answering."""
    try:
        body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    except OSError:
        return None
    total = 0.0
    for line in body.splitlines():
        if line.startswith("weir_component_received_events_total{") and 'component_id="out"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


def make_files(d, n):
    for i in range(n):
        # Distinct first lines: a file is known by a checksum of its first line.
        with open(os.path.join(d, "pod-%06d.log" % i), "w") as f:
            f.write("file %06d: INFO model_server.predict request handled in 12 ms\n" % i)


def run(n, idle, options, timeout):
    tmp = tempfile.mkdtemp(prefix="weir-many-files-")
    try:
        logs = os.path.join(tmp, "logs")
        os.makedirs(logs)
        t0 = time.monotonic()
        make_files(logs, n)
        made = time.monotonic() - t0
        out = os.path.join(tmp, "out.log")
        port = free_port()
        config = os.path.join(tmp, "many.toml")
        with open(config, "w") as f:
            f.write('data_dir = "%s"\n' % os.path.join(tmp, "data"))
            f.write('[sources.files]\ntype = "file"\ninclude = ["%s/*.log"]\n' % logs)
            for o in options:
                f.write(o + "\n")
            f.write('[sinks.out]\ntype = "file"\ninputs = ["files"]\npath = "%s"\n' % out)
            f.write('encoding.codec = "text"\n')
            f.write('\n[api]\naddress = "127.0.0.1:%d"\n' % port)
        err = open(os.path.join(tmp, "weir.err"), "w")
        start = time.monotonic()
        proc = subprocess.Popen([WEIR, "run", "--config", config], stdout=subprocess.DEVNULL,
                                stderr=err)
        most_fds = 0
        delivered = None
        try:
            while time.monotonic() - start < timeout:
                most_fds = max(most_fds, fds(proc.pid))
                done = sink_events(port)
                if done is not None and done >= n:
                    delivered = time.monotonic() - start
                    break
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
            result = {"files": n, "made_s": made, "delivered_s": delivered}
            if proc.poll() is None:
                # Let the last checkpoint and sink writes settle before measuring idle.
                time.sleep(2)
                result["fds"] = fds(proc.pid)
                c0 = cpu_seconds(proc.pid)
                time.sleep(idle)
                result["idle_cpu"] = (cpu_seconds(proc.pid) - c0) / idle
                result["peak_rss"] = peak_rss(proc.pid)
            result["most_fds"] = most_fds
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
            err.close()
        counts = collections.Counter()
        if os.path.exists(out):
            with open(out, "rb") as f:
                counts.update(f)
        result["distinct_lines"] = len(counts)
        result["repeated_lines"] = sum(c - 1 for c in counts.values() if c > 1)
        with open(os.path.join(tmp, "weir.err"), errors="replace") as f:
            errors = [l for l in f if "ERROR" in l or "WARN" in l]
        result["warnings"] = len(errors)
        result["first_warning"] = errors[0].strip()[:200] if errors else ""
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, action="append", help="files to make (repeatable)")
    ap.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU measured")
    ap.add_argument("--timeout", type=float, default=600.0, help="most seconds to wait for delivery")
    ap.add_argument("--option", action="append", default=[], help="extra file-source TOML line")
    args = ap.parse_args()
    if not os.path.exists(WEIR):
        sys.exit("build first: cargo build --release (or set WEIR_BIN)")
    print("binary: %s; %s cores; fd limit %s; options: %s" % (
        WEIR, os.cpu_count(), os.sysconf("SC_OPEN_MAX"), args.option or "defaults"))
    print("| files | every line once | time to deliver s | peak RSS MiB | fds after | most fds | idle CPU % of a core |")
    print("|---|---|---|---|---|---|---|")
    for n in args.files or [1000, 10000]:
        r = run(n, args.idle, args.option, args.timeout)
        once = "yes" if r["distinct_lines"] == n and r["repeated_lines"] == 0 else \
            "no: %d of %d, %d repeated" % (r["distinct_lines"], n, r["repeated_lines"])
        delivered = "%.1f" % r["delivered_s"] if r["delivered_s"] is not None else "not all"
        print("| %d | %s | %s | %s | %s | %d | %s |" % (
            n, once, delivered,
            "%.1f" % (r["peak_rss"] / 2**20) if "peak_rss" in r else "-",
            r.get("fds", "-"), r["most_fds"],
            "%.1f" % (100 * r["idle_cpu"]) if "idle_cpu" in r else "-"))
        if r["warnings"]:
            print("  (%d warnings or errors logged; first: %s)" % (r["warnings"], r["first_warning"]),
                  file=sys.stderr)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
