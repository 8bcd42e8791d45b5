#!/usr/bin/env python3
"""Syslog-over-TCP throughput of weir: a syslog source (TCP) into a blackhole sink.

Starts weir on a pipeline of its own, sends octet-counted frames (RFC 6587) over one or
more connections as fast as weir takes them, and measures the time until the sink has
counted every message. The messages are real lines: the loghub Linux sample as RFC 3164
(with a PRI put back) and the model-server samples wrapped in RFC 5424 headers with
structured data, alternating.

    cargo build --release
    scripts/bench_syslog_tcp.py --weir target/release/weir --messages 2000000 --connections 2

Prints messages/s, MiB/s of syslog bytes (framing included), weir's CPU time and peak RSS.
"""

import argparse
import os
import pathlib
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def messages():
    """A few thousand distinct syslog messages from the shared samples."""
    out = []
    linux = (DATA / "loghub" / "Linux" / "Linux_2k.log").read_text(errors="replace").splitlines()
    servers = []
    for f in sorted((DATA / "model-servers").glob("*.log")) + sorted(
        (DATA / "model-servers").glob("*.jsonl")
    ):
        servers += [line for line in f.read_text(errors="replace").splitlines() if line]
    for i, line in enumerate(linux):
        out.append(("<86>" + line).encode())
        s = servers[i % len(servers)]
        app = ["torchserve", "triton", "vllm", "bentoml", "kserve", "rayserve"][i % 6]
        out.append(
            (
                f"<134>1 2026-05-01T12:00:{i % 60:02d}.{i % 1000:03d}Z gpu-{i % 16} {app} "
                f"{1000 + i % 50} INFER [model@32473 name=\"resnet-{i % 3}\" rev=\"{i % 7}\"] {s}"
            ).encode()
        )
    return out


def frames(msgs):
    return b"".join(str(len(m)).encode() + b" " + m for m in msgs)


def metric(api, name, component):
    body = urllib.request.urlopen(f"http://{api}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name + "{") and f'component_id="{component}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def proc_stats(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick
    rss = 0
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            rss = int(line.split()[1]) * 1024
    return cpu, rss


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--weir", default=str(ROOT / "target" / "release" / "weir"))
    ap.add_argument("--messages", type=int, default=2_000_000)
    ap.add_argument("--connections", type=int, default=1)
    args = ap.parse_args()

    msgs = messages()
    block = frames(msgs)
    per_block = len(msgs)
    blocks_per_conn = max(1, args.messages // (per_block * args.connections))
    total = blocks_per_conn * per_block * args.connections
    total_bytes = len(block) * blocks_per_conn * args.connections

    port, api = free_port(), f"127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = pathlib.Path(tmp) / "bench.toml"
        cfg.write_text(
            f'data_dir = "{tmp}/data"\n[api]\naddress = "{api}"\n\n'
            f'[sources.syslog]\ntype = "syslog"\nmode = "tcp"\naddress = "127.0.0.1:{port}"\n\n'
            '[sinks.sink]\ntype = "blackhole"\ninputs = ["syslog"]\n'
        )
        weir = subprocess.Popen(
            [args.weir, "run", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=open(pathlib.Path(tmp) / "stderr", "w"),
        )
        try:
            deadline = time.time() + 30
            while True:
                try:
                    urllib.request.urlopen(f"http://{api}/health", timeout=1)
                    break
                except OSError:
                    if time.time() > deadline:
                        raise SystemExit("weir did not start")
                    time.sleep(0.05)
            cpu0, _ = proc_stats(weir.pid)

            def send():
                with socket.create_connection(("127.0.0.1", port)) as s:
                    for _ in range(blocks_per_conn):
                        s.sendall(block)

            threads = [threading.Thread(target=send) for _ in range(args.connections)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            while metric(api, "weir_component_received_events_total", "sink") < total:
                time.sleep(0.01)
            elapsed = time.perf_counter() - start
            for t in threads:
                t.join()
            cpu1, peak = proc_stats(weir.pid)
            parse_errors = metric(api, "weir_component_errors_total", "syslog")
        finally:
            weir.terminate()
            weir.wait(timeout=30)

    print(f"messages:     {total} over {args.connections} connection(s), {total_bytes} bytes")
    print(f"time:         {elapsed:.2f} s")
    print(f"throughput:   {total / elapsed:,.0f} messages/s, {total_bytes / elapsed / 2**20:.1f} MiB/s")
    print(f"weir CPU:     {cpu1 - cpu0:.2f} s ({(cpu1 - cpu0) / elapsed:.2f} cores)")
    print(f"weir peak RSS: {peak / 2**20:.0f} MiB")
    print(f"errors:       {parse_errors:.0f}")


if __name__ == "__main__":
    main()
