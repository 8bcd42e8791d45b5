#!/usr/bin/env python3
"""End-to-end throughput of weir: file -> parse_json -> blackhole (and the raw variant), with
the sink behind a memory buffer (the default) and behind a disk buffer.

Generates realistic model-server JSON prediction logs (a few hundred MB, cached under
target/bench-data or $CARGO_TARGET_DIR/bench-data), runs each scenario several times on the release binary, and prints
MiB/s, events/s, CPU seconds per GiB and peak RSS (median and spread of the runs).

    cargo build --release && python3 benches/e2e.py [--lines 1200000] [--runs 3]

The binary is target/release/weir, or the one named by WEIR_BIN. Acknowledgements are always
on: the file source attaches one handle per read batch and checkpoints only what its sinks
acknowledged. With `buffer.type = "disk"` the sink's events are written to segment files and
synced (fdatasync per group commit) before the source is acknowledged, then read back, decoded
and handed to the sink; the buffer lives in the run's temporary data_dir.

Completion is detected from weir's own metrics (the sink's received-events counter reaching
the number of lines), polled every 50 ms; the time is taken from process start to that
moment, so start-up is included.
"""

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
WEIR = os.environ.get("WEIR_BIN") or os.path.join(TARGET, "release", "weir")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def generate(path, lines):
    if os.path.exists(path) and sum(1 for _ in open(path, "rb")) == lines:
        return
    rnd = random.Random(42)
    models = [("resnet-18", "1.0"), ("churn-xgb", "3"), ("bert-sentiment", "2.1")]
    contracts = ["month-to-month", "one-year", "two-year"]
    with open(path, "w") as f:
        for i in range(lines):
            model, version = models[i % 3]
            score = rnd.random()
            f.write(json.dumps({
                "timestamp": "2026-11-27T10:%02d:%02d.%03dZ" % (i // 60000 % 60, i // 1000 % 60, i % 1000),
                "level": "INFO" if i % 50 else "ERROR",
                "logger": "model_server.predict",
                "model": model,
                "model_version": version,
                "request_id": "%016x" % rnd.getrandbits(64),
                "latency_ms": round(rnd.uniform(3, 80), 2),
                "features": {
                    "tenure_months": round(rnd.uniform(0, 72), 1),
                    "monthly_charges": round(rnd.uniform(18, 120), 2),
                    "contract": contracts[i % 3],
                },
                "prediction": "churn" if score > 0.5 else "stay",
                "score": round(score, 4),
            }, separators=(",", ":")) + "\n")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def metric(port, name, component):
    try:
        body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=2).read().decode()
    except OSError:
        return None
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name + "{") and ('component_id="%s"' % component) in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def proc_stats(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    hwm = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return cpu, hwm


SCENARIOS = {
    "file -> parse_json -> blackhole": """
[transforms.parsed]
type = "parse_json"
inputs = ["files"]

[sinks.sink]
type = "blackhole"
inputs = ["parsed"]
""",
    "file -> blackhole (raw)": """
[sinks.sink]
type = "blackhole"
inputs = ["files"]
""",
    "file -> parse_json -> disk buffer -> blackhole": """
[transforms.parsed]
type = "parse_json"
inputs = ["files"]

[sinks.sink]
type = "blackhole"
inputs = ["parsed"]
buffer.type = "disk"
buffer.max_bytes = 4294967296
""",
    "file -> disk buffer -> blackhole (raw)": """
[sinks.sink]
type = "blackhole"
inputs = ["files"]
buffer.type = "disk"
buffer.max_bytes = 4294967296
""",
}


def run_once(data, lines, pipeline):
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = os.path.join(tmp, "bench.toml")
        with open(config, "w") as f:
            f.write('data_dir = "%s"\n' % os.path.join(tmp, "data"))
            f.write('[sources.files]\ntype = "file"\ninclude = ["%s"]\n' % data)
            f.write(pipeline)
            f.write('\n[api]\naddress = "127.0.0.1:%d"\n' % port)
        start = time.monotonic()
        proc = subprocess.Popen([WEIR, "run", "--config", config], stderr=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL)
        try:
            while True:
                done = metric(port, "weir_component_received_events_total", "sink")
                if done is not None and done >= lines:
                    break
                if proc.poll() is not None:
                    sys.exit("weir exited early")
                time.sleep(0.05)
            elapsed = time.monotonic() - start
            cpu, rss = proc_stats(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    return elapsed, cpu, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scenario", action="append", help="run only these scenarios")
    args = ap.parse_args()
    if not os.path.exists(WEIR):
        sys.exit("build first: cargo build --release")
    cache = os.path.join(TARGET, "bench-data")
    os.makedirs(cache, exist_ok=True)
    data = os.path.join(cache, "predictions-%d.jsonl" % args.lines)
    generate(data, args.lines)
    size = os.path.getsize(data)
    print("data: %d JSON prediction lines, %.1f MiB; %d runs each; %s cores" % (
        args.lines, size / 2**20, args.runs, os.cpu_count()))
    print("| scenario | MiB/s | events/s | CPU s per GiB | peak RSS MiB | spread (MiB/s min-max) |")
    print("|---|---|---|---|---|---|")
    for name, pipeline in SCENARIOS.items():
        if args.scenario and name not in args.scenario:
            continue
        results = [run_once(data, args.lines, pipeline) for _ in range(args.runs)]
        rates = [size / 2**20 / r[0] for r in results]
        med = statistics.median(rates)
        elapsed = statistics.median(r[0] for r in results)
        cpu = statistics.median(r[1] for r in results)
        rss = statistics.median(r[2] for r in results)
        print("| %s | %.1f | %.0f | %.1f | %.1f | %.1f-%.1f |" % (
            name, med, args.lines / elapsed, cpu / (size / 2**30), rss / 2**20, min(rates), max(rates)))


if __name__ == "__main__":
    main()
