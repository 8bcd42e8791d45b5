#!/usr/bin/env python3
"""OTLP/HTTP and OTLP/gRPC -> Elasticsearch bulk: weir's opentelemetry source measured with
the benchmark's Elasticsearch stand-in (examples/bench_endpoint) and a load generator
(otlp_load.py) sending pre-encoded requests of 512 records (the Python SDK's batch size), like
SDK-instrumented model servers.

usage: python3 benches/compare/otlp.py [--records N] [--runs N] [--concurrency N] [--no-build]

Prints, per transport, the median of the runs: records/s, weir's CPU seconds per GiB of OTLP
protobuf received, weir's peak RSS, and the load generator's CPU seconds (far below the run's
wall time when it is not the bottleneck). The load generator needs grpcio for gRPC: it runs
with the project's .venv/bin/python (scripts/install-test-deps.sh) when there is one.
"""

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the benchmark's shared plumbing)

RECORDS_PER_REQUEST = 512


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def ld(tag, payload):
    return varint(tag << 3 | 2) + varint(len(payload)) + payload


def fixed64(tag, n):
    return varint(tag << 3 | 1) + struct.pack("<Q", n)


def kv(key, value):
    """A KeyValue with a string, int or float AnyValue."""
    if isinstance(value, str):
        any_value = ld(1, value.encode())
    elif isinstance(value, int):
        any_value = varint(3 << 3) + varint(value)
    else:
        any_value = varint(4 << 3 | 1) + struct.pack("<d", value)
    return ld(1, key.encode()) + ld(2, any_value)


def request(index, now_ns):
    resource = b"".join(ld(1, kv(k, v)) for k, v in [
        ("service.name", "churn-model"), ("service.version", "1.4.%d" % (index % 7)),
        ("k8s.namespace.name", "ml"), ("k8s.pod.name", "churn-model-%d" % (index % 5)),
        ("host.name", "node-%d" % (index % 3)), ("telemetry.sdk.language", "python")])
    records = []
    for i in range(RECORDS_PER_REQUEST):
        n = index * RECORDS_PER_REQUEST + i
        t = now_ns + n * 1000
        attrs = b"".join(ld(6, kv(k, v)) for k, v in [
            ("code.file.path", "/srv/app/predict.py"), ("code.function.name", "predict"),
            ("code.line.number", 88), ("request_id", "req-%08d" % n),
            ("model_version", "v%d" % (n % 4)), ("latency_ms", 3.5 + n % 100 / 10)])
        records.append(ld(2, fixed64(1, t) + varint(2 << 3) + varint(9) + ld(3, b"INFO")
                          + ld(5, ld(1, b"prediction served for request %d" % n)) + attrs
                          + varint(8 << 3 | 5) + struct.pack("<I", 1)
                          + ld(9, n.to_bytes(16, "big")) + ld(10, (n + 1).to_bytes(8, "big"))
                          + fixed64(11, t)))
    scope = ld(1, ld(1, b"inference")) + b"".join(records)
    return ld(1, ld(1, resource) + ld(2, scope))


def requests_file(records):
    folder = os.path.join(run.CACHE, "data", "otlp")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "requests-%d.bin" % records)
    if not os.path.exists(path):
        now = 1_765_000_000_000_000_000
        with open(path + ".tmp", "wb") as f:
            for i in range(records // RECORDS_PER_REQUEST):
                body = request(i, now)
                f.write(struct.pack(">I", len(body)) + body)
        os.rename(path + ".tmp", path)
    count = records // RECORDS_PER_REQUEST * RECORDS_PER_REQUEST
    wire = os.path.getsize(path) - 4 * (records // RECORDS_PER_REQUEST)
    return path, count, wire


def one_run(transport, bins, python, path, count, concurrency, run_dir):
    os.makedirs(os.path.join(run_dir, "data"), exist_ok=True)
    endpoint = run.Endpoint(bins["endpoint"], "model_version")
    ports = {"grpc": run.free_port(), "http": run.free_port()}
    env = dict(os.environ, BENCH_DATA_DIR=os.path.join(run_dir, "data"),
               BENCH_API_ADDRESS="127.0.0.1:%d" % run.free_port(), BENCH_ES_URL=endpoint.url,
               BENCH_OTLP_GRPC_ADDRESS="127.0.0.1:%d" % ports["grpc"],
               BENCH_OTLP_HTTP_ADDRESS="127.0.0.1:%d" % ports["http"],
               WEIR_LOG=os.environ.get("WEIR_LOG", "warn"))
    config = os.path.join(run.HERE, "weir", "s8-otlp-es.toml")
    with open(os.path.join(run_dir, "stderr"), "wb") as err:
        weir = subprocess.Popen([bins["weir"], "run", "--config", config], env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
    load = None
    try:
        if not run.wait_listening(ports[transport], weir):
            raise SystemExit("weir did not listen:\n" + run.tail(os.path.join(run_dir, "stderr")))
        t0 = time.monotonic()
        load = subprocess.Popen([python, os.path.join(run.HERE, "otlp_load.py"), transport,
                                 str(ports[transport]), str(concurrency), path],
                                stdout=subprocess.PIPE)
        while endpoint.stats()["es_docs"] < count:
            if load.poll() not in (None, 0):
                raise SystemExit("the load generator failed (%s)" % load.returncode)
            if time.monotonic() - t0 > 900:
                raise SystemExit("not delivered within 900 s")
            time.sleep(0.01)
        elapsed = time.monotonic() - t0
        cpu, rss = run.proc_usage(weir.pid)
        out = json.loads(load.communicate(timeout=120)[0])
        stats = endpoint.stats()
        if stats["es_marked"] != stats["es_docs"]:
            raise SystemExit("documents without model_version: %r" % stats)
        return {"elapsed": elapsed, "cpu": cpu, "rss": rss, "load_cpu": out["cpu"],
                "retries": out["retries"], "docs": stats["es_docs"],
                "endpoint_cpu": endpoint.cpu()}
    finally:
        if load and load.poll() is None:
            load.kill()
        run.stop(weir)
        endpoint.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_024_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    ap.add_argument("--transport", action="append", help="grpc, http (default both)")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    release = os.path.join(run.TARGET, "release")
    bins = {"weir": os.environ.get("WEIR_BIN") or os.path.join(release, "weir"),
            "endpoint": os.environ.get("ENDPOINT_BIN")
            or os.path.join(release, "examples", "bench_endpoint")}
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--example", "bench_endpoint"],
                       cwd=run.ROOT, check=True)
        subprocess.run(["cargo", "build", "--release", "--bin", "weir"], cwd=run.ROOT, check=True)
    venv = os.path.join(run.ROOT, ".venv", "bin", "python")
    python = venv if os.path.exists(venv) else sys.executable
    path, count, wire = requests_file(args.records)
    print("command: " + " ".join([os.path.relpath(sys.argv[0], run.ROOT)] + sys.argv[1:]))
    print("machine: " + run.machine())
    print("input: %s records in %d requests of %d, %.1f MiB of OTLP protobuf; %d in flight" % (
        "{:,}".format(count), count // RECORDS_PER_REQUEST, RECORDS_PER_REQUEST,
        wire / run.MIB, args.concurrency))
    print("load average at start: %.2f\n" % run.loadavg())
    transports = args.transport or ["http", "grpc"]
    results = {t: [] for t in transports}
    runs_root = os.path.join(run.CACHE, "runs", "otlp-" + time.strftime("%Y%m%d-%H%M%S"))
    for i in range(args.runs):
        for t in transports:
            r = one_run(t, bins, python, path, count, args.concurrency,
                        os.path.join(runs_root, "%s-%d" % (t, i)))
            results[t].append(r)
            run.log("%s run %d: %.2f s, %d retries" % (t, i + 1, r["elapsed"], r["retries"]))
    print("| transport | records/s | weir CPU s per GiB | weir peak RSS | load generator CPU s"
          " / wall s | runs (records/s) |")
    print("|---|---|---|---|---|---|")
    for t in transports:
        rs = results[t]
        med = statistics.median(r["elapsed"] for r in rs)
        cpu = statistics.median(r["cpu"] for r in rs)
        print("| OTLP/%s | %s | %.1f | %.0f MiB | %.1f / %.1f | %s |" % (
            t.upper() if t == "http" else "gRPC", "{:,.0f}".format(count / med),
            cpu / (wire / run.GIB), max(r["rss"] for r in rs) / run.MIB,
            statistics.median(r["load_cpu"] for r in rs), med,
            ", ".join("{:,.0f}".format(count / r["elapsed"]) for r in rs)))
    with open(os.path.join(runs_root, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
