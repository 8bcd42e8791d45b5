#!/usr/bin/env python3
"""weir against Vector, Fluent Bit, rsyslog, syslog-ng and the machine's limit, scenario
by scenario.

One command builds what it needs, generates and caches its data, installs the peers when they
are missing, runs every scenario several times for every shipper that can do it, checks at
the far end that the work was done, and prints a table per scenario:

    python3 benches/compare/run.py                       # everything, 3 runs each
    python3 benches/compare/run.py --size-mib 64 --runs 2 --scenario 1 --scenario 3

Scenarios (the configurations are in this folder, one file per shipper and scenario):
  1. file -> file, no parsing: the raw-copy bound, not a workload
                                                      (weir, Vector, rsyslog, syslog-ng)
  2. file -> parse JSON -> Elasticsearch bulk         (weir, Vector, rsyslog, syslog-ng)
  3. Apache access log -> regex captures -> file      (weir, Vector, rsyslog, syslog-ng)
  4. syslog over TCP, octet-counted -> Loki push      (weir, Vector, syslog-ng; Debian's
                                                       rsyslog has no HTTP output)
  5. scenario 2 with a disk buffer                    (weir, Vector, rsyslog, syslog-ng;
                                                       skipped for a weir whose configuration
                                                       does not validate)
  6. model-server logs -> parse -> metrics + drift -> Elasticsearch bulk
                                                      (weir, Vector without drift)
  7. 1,000 pods' CRI log files -> Loki push           (weir, Vector; rsyslog and syslog-ng
                                                       cannot join CRI partial lines)
  8. OTLP/HTTP -> Elasticsearch bulk                  (weir, Vector; Debian's rsyslog and
                                                       syslog-ng 3.38 take no OTLP)
  9. syslog over TCP from 1,000 connections -> Elasticsearch bulk
                                                      (weir, Vector, rsyslog, syslog-ng)
  10. file -> Kafka (the agent tier)                  (weir; the broker is tansu, started
                                                       per run; see README.md for the peers)

Vector and Fluent Bit run when their binaries are given (--peer-bin vector=PATH or VECTOR_BIN,
--peer-bin fluent-bit=PATH or FLUENT_BIT_BIN), each in the scenarios its folder has a
configuration for (Fluent Bit: the first nine); see README.md.

What a run measures. The shipper starts on a fresh state directory and reads its input from
the beginning (file scenarios), or receives it from one TCP connection that sends the whole
file with sendfile(2) (scenario 4), from 1,000 connections made before the clock starts,
each sending its part with sendfile(2) (scenario 9), or from otlp_load.py's OTLP/HTTP
requests (scenario 8). The clock runs from the shipper's start (file scenarios, so start-up
counts), from the first byte sent (scenarios 4 and 9) or the first request (scenario 8) until
the far end has received every event: lines in the output file (for scenario 1, whose output
must equal its input, the output file's size, polled every millisecond; the lines are
counted after), documents and entries counted by the endpoint (examples/bench_endpoint), or
records in the Kafka topic (scenario 10; the broker's high watermarks, polled).
Beyond the count, the far end is checked for the work: a parsed field in every document
(2, 5, 6, 8, 9) or line (3); every CRI record's parts joined into one Loki line (7: the
lines hold exactly the records' message bytes); and in scenario 6 the requests counted on
the shipper's Prometheus endpoint and, for weir, every drift window's report. CPU time (user + system) and
peak RSS (VmHWM) are the shipper's own, read from /proc at that moment, its child processes
included. A run that does not
deliver every event within the time limit is reported as failed, with what arrived; no speed
is given for it.

The machine's limit is measured on the same input: `cat` to /dev/null, and
examples/bench_split, which reads and splits the input into lines (or octet-counted frames
from a TCP connection, for scenario 4) and does nothing else. Where a scenario writes a file
(1 and 3), `copy` is `cat` to a new file in the shipper's place: what writing the bytes once
costs. On a virtual machine that hands freed memory back to its host (free page reporting),
new page-cache pages can cost far more than the copy itself, and this row shows it.

The machine is shared: the table reports the spread of the runs and the load average before
and after each scenario, and the endpoint's and this harness's own CPU time, so a reader can
tell whether they, or other work, limited a result.
"""

import argparse
import bisect
import datetime
import hashlib
import json
import mmap
import os
import platform
import random
import re
import selectors
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(ROOT, "tests", "data")
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
CACHE = os.path.join(TARGET, "bench-compare")
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1 << 20
GIB = 1 << 30

# Bump when a generator changes, so cached data is made again.
DATA_VERSION = 2


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

def data_lines(*parts):
    path = os.path.join(DATA, *parts)
    with open(path, "rb") as f:
        # Lines without their line ending (the Apache sample has CRLF endings, which some
        # shippers keep and some drop), empty lines left out (shippers skip them).
        return [line.rstrip(b"\r") for line in f.read().split(b"\n") if line.strip()]


def model_server_lines():
    folder = os.path.join(DATA, "model-servers")
    out = []
    for name in sorted(os.listdir(folder)):
        if name.endswith((".log", ".jsonl")):
            out += data_lines("model-servers", name)
    return out


def gen_loghub(rnd, target):
    """The loghub samples (six systems) and the model-server samples, interleaved, repeated."""
    block = []
    for system in ["Apache", "HDFS", "Hadoop", "Linux", "OpenSSH", "Spark"]:
        block += data_lines("loghub", system, system + "_2k.log")
    servers = model_server_lines()
    mixed = []
    for i, line in enumerate(block):
        mixed.append(line)
        if i % 50 == 0:
            mixed.append(servers[(i // 50) % len(servers)])
    chunk = b"\n".join(mixed) + b"\n"
    while True:
        yield chunk


def gen_predictions(rnd, target):
    """JSON prediction logs as model servers write them (~300 bytes, a nested object)."""
    models = [("resnet-18", "1.0"), ("churn-xgb", "3"), ("bert-sentiment", "2.1"),
              ("llama-3-8b", "0.4")]
    contracts = ["month-to-month", "one-year", "two-year"]
    i = 0
    while True:
        lines = []
        for _ in range(2000):
            model, version = models[i % len(models)]
            score = rnd.random()
            lines.append(
                '{"timestamp":"2026-11-27T10:%02d:%02d.%03dZ","level":"%s",'
                '"logger":"model_server.predict","model":"%s","model_version":"%s",'
                '"request_id":"%016x","latency_ms":%.2f,"features":{"tenure_months":%.1f,'
                '"monthly_charges":%.2f,"contract":"%s"},"prediction":"%s","score":%.4f,'
                '"user_agent":"python-requests/2.31.0","gpu":%d}' % (
                    i // 60000 % 60, i // 1000 % 60, i % 1000,
                    "INFO" if i % 50 else "ERROR", model, version, rnd.getrandbits(64),
                    rnd.uniform(3, 80), rnd.uniform(0, 72), rnd.uniform(18, 120),
                    contracts[i % 3], "churn" if score > 0.5 else "stay", score, i % 8))
            i += 1
        yield ("\n".join(lines) + "\n").encode()


def gen_access(rnd, target):
    """Apache combined-format access lines of model-serving endpoints."""
    paths = ["/predictions/resnet-18", "/predictions/bert-sentiment", "/v1/models/churn:predict",
             "/v2/models/densenet_onnx/infer", "/v1/chat/completions", "/ping", "/metrics",
             "/v2/health/ready", "/explanations/resnet-18?top_k=5"]
    agents = ["python-requests/2.31.0", "Go-http-client/1.1", "curl/8.5.0",
              "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/120.0 Safari/537.36", "kube-probe/1.29", "Prometheus/2.48.0"]
    users = ["-", "-", "-", "svc-batch", "alice"]
    referrers = ["-", "-", "https://dashboard.example.com/models", "http://10.0.0.5:8080/"]
    methods = ["POST", "POST", "POST", "GET", "PUT"]
    statuses = [200] * 12 + [201, 204, 400, 404, 429, 500, 503]
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    i = 0
    while True:
        lines = []
        for _ in range(2000):
            status = statuses[rnd.randrange(len(statuses))]
            size = "-" if status == 204 else str(rnd.randrange(40, 90000))
            lines.append('10.%d.%d.%d - %s [%02d/%s/2026:%02d:%02d:%02d +0000] "%s %s HTTP/1.1" %d %s '
                         '"%s" "%s"' % (
                             i % 7, i % 251, rnd.randrange(1, 255), users[i % len(users)],
                             1 + i // 86400 % 28, months[i // 2419200 % 12],
                             i // 3600 % 24, i // 60 % 60, i % 60,
                             methods[rnd.randrange(len(methods))], paths[i % len(paths)], status,
                             size, referrers[i % len(referrers)], agents[i % len(agents)]))
            i += 1
        yield ("\n".join(lines) + "\n").encode()


RFC3164 = re.compile(rb"^(\w{3}) +(\d+) (\d\d:\d\d:\d\d) (\S+) ([^:\[]+?)(?:\[(\d+)\])?: ?(.*)$")
MONTHS = {m: i + 1 for i, m in enumerate(
    [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
     b"Dec"])}


def gen_syslog(rnd, target):
    """RFC 5424 messages in RFC 6587 octet-counted frames: loghub's Linux syslog sample (its
    header fields moved into a 5424 header) and the model-server lines with structured data."""
    messages = []
    for line in data_lines("loghub", "Linux", "Linux_2k.log"):
        m = RFC3164.match(line)
        if not m:
            continue
        mon, day, clock, host, app, pid, msg = m.groups()
        app = re.sub(rb"[^\x21-\x7e]", b"_", app)[:48] or b"-"
        ts = b"2026-%02d-%02dT%s.000Z" % (MONTHS.get(mon, 1), int(day), clock)
        messages.append(b"<86>1 %s %s %s %s - - %s" % (ts, host, app, pid or b"-", msg or b"-"))
    apps = [b"torchserve", b"triton", b"vllm", b"bentoml", b"kserve", b"rayserve"]
    for i, line in enumerate(model_server_lines() * 40):
        messages.append(
            b'<134>1 2026-11-27T10:00:%02d.%03dZ gpu-%d %s %d INFER [model@32473 name="resnet-%d" '
            b'rev="%d"] %s' % (i % 60, i % 1000, i % 16, apps[i % 6], 1000 + i % 50, i % 3,
                               i % 7, line))
    rnd.shuffle(messages)
    chunk = b"".join(b"%d %s" % (len(m), m) for m in messages)
    count = len(messages)
    while True:
        yield chunk, count


# The features of the two models whose predictions scenario 6's input holds.
PREDICTION_FEATURES = {("churn-xgb", "3"): ["tenure_months", "monthly_charges", "contract"],
                       ("fraud-gbm", "7"): ["amount", "merchant_category", "hour"]}


def gen_model_servers(rnd, target):
    """One node's model-server logs, interleaved as one file receives them (the shapes of
    tests/data/model-servers/): TorchServe access lines (log4j prefix, latency in ms), JSON
    prediction logs with features of two models (whose inputs drift in the second half),
    vLLM's engine stats, request and API access lines, and a FastAPI app's uvicorn access
    lines. Its facts: the requests among them (what `weir_model_requests_total` counts) and
    the predictions per model and version (from which the drift windows follow)."""
    servable = [("resnet-18", "/predictions/resnet-18/1.0"), ("densenet161", "/predictions/densenet161"),
                ("bert-sentiment", "/predictions/bert-sentiment/2.1")]
    ts_status = [200] * 18 + [400, 503]
    uv_status = [(200, "OK")] * 17 + [(422, "Unprocessable Entity"),
                                      (500, "Internal Server Error"), (404, "Not Found")]
    contracts = ["month-to-month", "one-year", "two-year"]
    merchants = ["grocery", "travel", "electronics", "fuel", "restaurants"]
    half = target // 2
    written = i = 0
    while True:
        lines = []
        requests = 0
        predictions = {}
        for _ in range(2000):
            k = i % 20
            sec = i // 40
            clock = "%02d:%02d:%02d" % (10 + sec // 3600 % 12, sec // 60 % 60, sec % 60)
            drifted = written >= half
            if k < 6:
                model, path = servable[i % 3]
                lines.append(
                    '2026-11-27T%s,%03d [INFO ] W-%d-%s_1.0 ACCESS_LOG - /10.1.%d.%d:%d "POST %s '
                    'HTTP/1.1" %d %d' % (clock, i % 1000, 9000 + i % 4, model, i % 8,
                                         rnd.randrange(2, 250), rnd.randrange(30000, 65000),
                                         path, ts_status[rnd.randrange(20)],
                                         rnd.randrange(8, 400)))
                requests += 1
            elif k < 12:
                key = list(PREDICTION_FEATURES)[1 - k % 2]
                if k % 2:
                    features = '{"tenure_months":%.1f,"monthly_charges":%.2f,"contract":"%s"}' % (
                        rnd.uniform(0, 72), rnd.uniform(18, 120) + (35 if drifted else 0),
                        contracts[rnd.randrange(3)])
                    prediction = "churn" if rnd.random() > 0.7 else "stay"
                else:
                    features = '{"amount":%.2f,"merchant_category":"%s","hour":%d}' % (
                        rnd.lognormvariate(3.5 + (0.8 if drifted else 0), 1.0),
                        merchants[rnd.randrange(5)], rnd.randrange(24))
                    prediction = "fraud" if rnd.random() > 0.97 else "legit"
                lines.append(
                    '{"timestamp":"2026-11-27T%s.%03dZ","level":"INFO","logger":'
                    '"model_server.predict","model":"%s","model_version":"%s","request_id":'
                    '"%016x","latency_ms":%.2f,"features":%s,"prediction":"%s","score":%.4f}' % (
                        clock, i % 1000, key[0], key[1], rnd.getrandbits(64),
                        rnd.uniform(2, 60), features, prediction, rnd.random()))
                requests += 1
                predictions[key] = predictions.get(key, 0) + 1
            elif k == 12:
                lines.append(
                    'INFO 11-27 %s [loggers.py:87] Engine 000: Avg prompt throughput: %.1f '
                    'tokens/s, Avg generation throughput: %.1f tokens/s, Running: %d reqs, '
                    'Waiting: %d reqs, GPU KV cache usage: %.1f%%, Prefix cache hit rate: %.1f%%' % (
                        clock, rnd.uniform(0, 2000), rnd.uniform(10, 1200), rnd.randrange(32),
                        rnd.randrange(50), rnd.uniform(0, 99), rnd.uniform(0, 60)))
            elif k < 15:
                lines.append('INFO 11-27 %s [async_llm.py:204] Added request chatcmpl-%032x.' % (
                    clock, rnd.getrandbits(128)))
            elif k < 17:
                lines.append('(APIServer pid=3646) INFO:     10.80.%d.%d:%d - "POST '
                             '/v1/chat/completions HTTP/1.1" 200 OK' % (
                                 i % 16, rnd.randrange(2, 250), rnd.randrange(30000, 65000)))
                requests += 1
            else:
                status, reason = uv_status[rnd.randrange(20)]
                lines.append('INFO:     10.0.%d.%d:%d - "POST /predict HTTP/1.1" %d %s' % (
                    i % 4, rnd.randrange(2, 250), rnd.randrange(30000, 65000), status, reason))
                requests += 1
            i += 1
        chunk = ("\n".join(lines) + "\n").encode()
        written += len(chunk)
        facts = {"requests": requests}
        for (model, version), n in predictions.items():
            facts["predictions %s %s" % (model, version)] = n
        yield {"chunk": chunk, "events": len(lines), "facts": facts}


PODS = 1000
# The container runtimes split a line longer than this into partial (`P`) lines (containerd's
# and CRI-O's default).
CRI_SPLIT = 16 * 1024


def write_pods(rnd, target, root):
    """1,000 pods' log files as the kubelet lays them out (`<namespace>_<pod>_<uid>/
    <container>/0.log`) in the CRI format (`<RFC 3339 nano> stdout|stderr P|F <message>`):
    model-server and loghub lines, a fifth on stderr, and every 1000th record a long one
    (17 to 40 KiB, a JSON batch request) that the runtime split into 16 KiB `P` parts and
    its `F` end. Returns (records, bytes, facts): a record is what a shipper joins from its
    parts, the facts its messages' total bytes."""
    pool = [line.decode("utf-8", "replace").rstrip() for line in model_server_lines()]
    for system in ["Apache", "HDFS", "Spark", "OpenSSH"]:
        pool += [line.decode("utf-8", "replace").rstrip()
                 for line in data_lines("loghub", system, system + "_2k.log")[:400]]
    pool = [p for p in pool if p]
    namespaces = ["ml-serving", "ml-batch", "llm", "feature-store", "payments", "search",
                  "default", "observability"]
    apps = [("torchserve", "torchserve"), ("vllm-llama", "vllm"), ("churn-api", "api"),
            ("triton-densenet", "triton"), ("kserve-bert", "kserve-container"),
            ("ray-serve", "ray-worker"), ("feast-online", "feast"), ("nginx-ingress", "nginx")]
    per_pod = max(1, target // PODS)
    records = written = line_bytes = 0
    base = 1795600000  # 2026-11-24
    for p in range(PODS):
        app, container = apps[p % len(apps)]
        pod = "%s-%08x-%05x" % (app, rnd.getrandbits(32), rnd.getrandbits(20))
        uid = "%08x-%04x-%04x-%04x-%012x" % (rnd.getrandbits(32), rnd.getrandbits(16),
                                             rnd.getrandbits(16), rnd.getrandbits(16),
                                             rnd.getrandbits(48))
        folder = os.path.join(root, "%s_%s_%s" % (namespaces[p % len(namespaces)], pod, uid),
                              container)
        os.makedirs(folder)
        t = base * 10**9 + p * 7919 * 10**6 + rnd.getrandbits(30)
        out = []
        size = 0
        while size < per_pod:
            records += 1
            stream = "stderr" if rnd.random() < 0.2 else "stdout"
            if records % 1000 == 0:
                n = rnd.randrange(17 * 1024, 40 * 1024)
                msg = '{"batch":[' + ",".join('%.6f' % rnd.random()
                                              for _ in range(n // 9)) + ']}'
                parts = [msg[j:j + CRI_SPLIT] for j in range(0, len(msg), CRI_SPLIT)]
            else:
                msg = pool[rnd.randrange(len(pool))]
                parts = [msg]
            line_bytes += len(msg.encode())
            for j, part in enumerate(parts):
                t += rnd.randrange(1, 50_000_000)
                stamp = "%s.%09dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S",
                                                   time.gmtime(t // 10**9)), t % 10**9)
                line = "%s %s %s %s\n" % (stamp, stream, "F" if j == len(parts) - 1 else "P",
                                          part)
                out.append(line)
                size += len(line.encode())
        with open(os.path.join(folder, "0.log"), "wb") as f:
            data = "".join(out).encode()
            f.write(data)
            written += len(data)
    return records, written, {"line_bytes": line_bytes}


def gen_otlp(rnd, target):
    """OTLP/HTTP export requests of 512 log records each, as otlp.py sends them (resource,
    scope, trace context and six attributes per record), each stored as a 4-byte big-endian
    length and the protobuf bytes, the framing otlp_load.py reads."""
    import otlp  # the request encoder; otlp.py imports this file, so not at the top
    now = 1_765_000_000_000_000_000
    index = 0
    while True:
        chunk = b""
        for _ in range(8):
            body = otlp.request(index, now)
            chunk += struct.pack(">I", len(body)) + body
            index += 1
        yield {"chunk": chunk, "events": 8 * otlp.RECORDS_PER_REQUEST}


DATASETS = {
    # name: (file or folder name, generator, framing)
    "loghub": ("loghub-mix.log", gen_loghub, "lines"),
    "predictions": ("predictions.jsonl", gen_predictions, "lines"),
    "access": ("access.log", gen_access, "lines"),
    "syslog": ("syslog-rfc5424.octets", gen_syslog, "octets"),
    "model-servers": ("model-servers.log", gen_model_servers, "lines"),
    "pods": ("pods", write_pods, "folder"),
    "otlp": ("otlp-logs.requests", gen_otlp, "requests"),
}


def dataset(name, size_mib):
    """(path, events, bytes) of a generated input, made once per size and cached; its facts
    (what the far-end checks expect beyond the count) are read with `facts_of(path)`."""
    file_name, gen, framing = DATASETS[name]
    folder = os.path.join(CACHE, "data", "%dMiB" % size_mib)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, file_name)
    meta_path = path + ".meta.json"
    if os.path.exists(meta_path) and os.path.exists(path):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("version") == DATA_VERSION and (
                framing == "folder" or meta.get("bytes") == os.path.getsize(path)):
            return path, meta["events"], meta["bytes"]
    log("generating %s (%d MiB) ..." % (path, size_mib))
    target = size_mib * MIB
    rnd = random.Random(7)
    events = written = 0
    facts = {}
    if framing == "folder":
        shutil.rmtree(path + ".tmp", ignore_errors=True)
        events, written, facts = gen(rnd, target, path + ".tmp")
        shutil.rmtree(path, ignore_errors=True)
    else:
        with open(path + ".tmp", "wb") as f:
            for chunk in gen(rnd, target):
                if isinstance(chunk, dict):
                    events += chunk["events"]
                    for k, v in chunk.get("facts", {}).items():
                        facts[k] = facts.get(k, 0) + v
                    chunk = chunk["chunk"]
                elif framing == "octets":
                    chunk, count = chunk
                    events += count
                else:
                    events += chunk.count(b"\n")
                f.write(chunk)
                written += len(chunk)
                if written >= target:
                    break
    os.rename(path + ".tmp", path)
    with open(meta_path, "w") as f:
        json.dump({"version": DATA_VERSION, "events": events, "bytes": written,
                   "facts": facts}, f)
    return path, events, written


def facts_of(path):
    """What a generated input's far-end checks expect beyond its count (see its generator)."""
    with open(path + ".meta.json") as f:
        return json.load(f).get("facts", {})


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid):
    out = [pid]
    try:
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                for child in f.read().split():
                    out += descendants(int(child))
    except OSError:
        pass
    return out


def proc_usage(pid):
    """(CPU seconds, peak RSS bytes) of a process and its descendants, from /proc."""
    cpu = 0.0
    rss = 0
    for p in descendants(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / CLK_TCK
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        rss += int(line.split()[1]) * 1024
        except (OSError, IndexError, ValueError):
            pass
    return cpu, rss


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


class pinned:
    """Runs the block with this process's CPU affinity set to `cpus` (None: unchanged), so that
    the processes it starts inherit it; the harness's own affinity is restored after."""

    def __init__(self, cpus):
        self.cpus = cpus

    def __enter__(self):
        self.saved = os.sched_getaffinity(0)
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)

    def __exit__(self, *exc):
        os.sched_setaffinity(0, self.saved)


def stop(proc, grace=30):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def wait_listening(port, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def read_listening_line(proc, what):
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("listening on "):
        raise RuntimeError("%s did not start: %r" % (what, line))
    return line.split()[-1]


class Endpoint:
    """examples/bench_endpoint, one per run so its counters and CPU time are the run's."""

    def __init__(self, binary, marker=None):
        args = [binary]
        if marker:
            args += ["--marker", marker]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addr = read_listening_line(self.proc, "bench_endpoint")
        self.url = "http://" + self.addr

    def stats(self):
        with urllib.request.urlopen(self.url + "/_bench/stats", timeout=5) as r:
            return json.loads(r.read())

    def cpu(self):
        return proc_usage(self.proc.pid)[0]

    def close(self):
        stop(self.proc, grace=5)
        return self.proc.stderr.read().decode(errors="replace")


KAFKA_TOPIC = "bench"
KAFKA_PARTITIONS = 3


def find_tansu():
    """The Kafka broker of scenario 10 (and of weir's Kafka tests): `tansu` on the PATH or in
    cargo's bin folder; None when it is not installed."""
    cargo_home = os.environ.get("CARGO_HOME") or os.path.join(os.path.expanduser("~"), ".cargo")
    for path in [shutil.which("tansu"), os.path.join(cargo_home, "bin", "tansu")]:
        if path and os.access(path, os.X_OK):
            return path
    return None


class KafkaBroker:
    """A fresh tansu broker per run (in-memory storage), with the topic the shipper produces
    to. It counts the records in the topic from the high watermarks that Fetch responses carry:
    tansu 0.6.0 answers ListOffsets (latest) with the offset after its newest stored batch's
    first record, not the partition's end, so a Kafka client's watermark query
    (query_watermark_offsets, which uses ListOffsets) cannot count here. The harness speaks the
    two fixed-format requests itself (Kafka protocol, Fetch v4) so that it needs no client
    library; the records are not decoded."""

    def __init__(self, binary, run_dir):
        folder = os.path.join(run_dir, "broker")
        os.makedirs(folder, exist_ok=True)
        self.port = free_port()
        url = "tcp://127.0.0.1:%d" % self.port
        self.stderr_path = os.path.join(run_dir, "broker.stderr")
        # An empty working folder: tansu reads a `.env` file from it if there is one.
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [binary, "broker", "--silent", "--storage-engine", "memory://tansu/",
                 "--listener-url", url, "--advertised-listener-url", url],
                cwd=folder, stdout=subprocess.DEVNULL, stderr=err)
        if not wait_listening(self.port, self.proc):
            raise Failed("the Kafka broker did not listen:\n%s" % tail(self.stderr_path))
        r = subprocess.run([binary, "topic", "create", KAFKA_TOPIC, "--partitions",
                            str(KAFKA_PARTITIONS), "--broker", url], cwd=folder,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise Failed("tansu topic create: %s" % r.stdout.decode(errors="replace"))
        self.bootstrap = "127.0.0.1:%d" % self.port
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        self.high = [0] * KAFKA_PARTITIONS
        self.correlation = 0

    def _recv(self, n):
        data = b""
        while len(data) < n:
            part = self.sock.recv(n - len(data))
            if not part:
                raise Failed("the Kafka broker closed the counting connection")
            data += part
        return data

    def records(self):
        """Records in the topic: the sum of its partitions' high watermarks. Each partition is
        fetched at its last known watermark with a 1-byte limit, so a poll moves at most one
        batch per partition that grew."""
        self.correlation += 1
        name = KAFKA_TOPIC.encode()
        parts = b"".join(struct.pack(">iqi", p, hw, 1) for p, hw in enumerate(self.high))
        body = struct.pack(">iiiib", -1, 0, 0, 1, 0) + struct.pack(">ih", 1, len(name)) + \
            name + struct.pack(">i", len(self.high)) + parts
        client = b"bench"
        req = struct.pack(">hhih", 1, 4, self.correlation, len(client)) + client + body
        self.sock.sendall(struct.pack(">i", len(req)) + req)
        size, = struct.unpack(">i", self._recv(4))
        data = self._recv(size)
        correlation, _throttle, topics = struct.unpack_from(">iii", data, 0)
        if correlation != self.correlation:
            raise Failed("Fetch answered out of turn")
        pos = 12
        for _ in range(topics):
            n, = struct.unpack_from(">h", data, pos)
            pos += 2 + n
            partitions, = struct.unpack_from(">i", data, pos)
            pos += 4
            for _ in range(partitions):
                p, err, hw, _lso, aborted = struct.unpack_from(">ihqqi", data, pos)
                pos += 26 + max(aborted, 0) * 16
                records, = struct.unpack_from(">i", data, pos)
                pos += 4 + max(records, 0)
                if err:
                    raise Failed("Fetch of partition %d: Kafka error code %d" % (p, err))
                self.high[p] = hw
        return sum(self.high)

    def cpu(self):
        return proc_usage(self.proc.pid)[0]

    def close(self):
        try:
            self.sock.close()
        finally:
            stop(self.proc, grace=5)


class LineCounter:
    """Counts the lines of a growing output file, reading only what was added since."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.lines = 0
        self.f = None

    def poll(self):
        if self.f is None:
            try:
                self.f = open(self.path, "rb")
            except FileNotFoundError:
                return self.lines
        while True:
            data = self.f.read(8 * MIB)
            if not data:
                break
            self.offset += len(data)
            self.lines += data.count(b"\n")
        return self.lines

    def close(self):
        if self.f:
            self.f.close()


def count_in_file(path, needle):
    """Occurrences of `needle` in a file, chunk by chunk."""
    total = 0
    keep = b""
    with open(path, "rb") as f:
        while True:
            data = f.read(16 * MIB)
            if not data:
                break
            block = keep + data
            total += block.count(needle)
            # Carry the tail that could start a match; a full match in it was counted already.
            keep = block[-(len(needle) - 1):] if len(needle) > 1 else b""
            total -= keep.count(needle)
    return total


DIGESTS = {}


def file_digest(path, cache=False):
    """SHA-256 of a file; inputs (cache=True) are hashed once per harness run."""
    if cache and path in DIGESTS:
        return DIGESTS[path]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            data = f.read(16 * MIB)
            if not data:
                break
            h.update(data)
    if cache:
        DIGESTS[path] = h.hexdigest()
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Peers
# ---------------------------------------------------------------------------------------------

def as_root(cmd):
    if os.geteuid() != 0 and shutil.which("sudo"):
        cmd = ["sudo"] + cmd
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def apt_install(packages):
    missing = [p for p in packages if subprocess.run(
        ["dpkg", "-s", p], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0]
    if not missing:
        return None
    log("installing Debian packages: " + " ".join(missing))
    as_root(["apt-get", "update", "-qq"])
    env_cmd = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq"]
    r = as_root(env_cmd + missing)
    if r.returncode != 0:
        return "apt-get install %s failed:\n%s" % (" ".join(missing), r.stdout.decode()[-2000:])
    return None


RSYSLOG_MODULES = "/usr/lib/x86_64-linux-gnu/rsyslog"


def rsyslog_modules_dir():
    for d in [RSYSLOG_MODULES, "/usr/lib/rsyslog", "/usr/lib64/rsyslog"]:
        if os.path.isdir(d):
            return d
    return None


def setup_rsyslog():
    """rsyslogd from Debian (rsyslog, rsyslog-elasticsearch); its mmnormalize and mmjsonparse
    come with the rsyslog package. Returns (binary, None) or (None, why not)."""
    err = apt_install(["rsyslog", "rsyslog-elasticsearch"])
    if err:
        return None, err
    binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    mods = rsyslog_modules_dir()
    if not os.path.exists(binary) or not mods:
        return None, "rsyslogd not found after installing"
    for m in ["imfile", "mmjsonparse", "mmnormalize", "omelasticsearch"]:
        if not os.path.exists(os.path.join(mods, m + ".so")):
            return None, "rsyslog module %s missing in %s" % (m, mods)
    return binary, None


SYSLOG_NG_PACKAGES = ["syslog-ng-core", "syslog-ng-mod-http", "syslog-ng-scl"]


def setup_syslog_ng():
    """syslog-ng from Debian's packages, unpacked into the benchmark's own folder (the rsyslog
    and syslog-ng packages conflict; both provide system-log-daemon), with the libraries it
    links installed from Debian. Returns ({binary, env, args, scl}, None) or (None, why)."""
    root = os.path.join(CACHE, "peers", "syslog-ng")
    binary = os.path.join(root, "usr", "sbin", "syslog-ng")
    debs = os.path.join(CACHE, "peers", "debs")
    if not os.path.exists(binary):
        os.makedirs(debs, exist_ok=True)
        log("downloading syslog-ng's Debian packages into " + debs)
        r = subprocess.run(["apt-get", "download"] + SYSLOG_NG_PACKAGES, cwd=debs,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            return None, "apt-get download failed:\n" + r.stdout.decode()[-2000:]
        for deb in sorted(os.listdir(debs)):
            if deb.endswith(".deb"):
                subprocess.run(["dpkg", "-x", os.path.join(debs, deb), root], check=True)
    # The libraries the packages depend on (not syslog-ng itself, nor init-script helpers).
    needed = set()
    for deb in os.listdir(debs) if os.path.isdir(debs) else []:
        if not deb.endswith(".deb"):
            continue
        depends = subprocess.run(["dpkg-deb", "-f", os.path.join(debs, deb), "Depends"],
                                 stdout=subprocess.PIPE).stdout.decode()
        for alternative in depends.split(","):
            name = alternative.split("|")[0].split("(")[0].strip()
            if name and not name.startswith(("syslog-ng", "sysvinit-utils", "lsb-base")):
                needed.add(name)
    err = apt_install(sorted(needed))
    if err:
        return None, err
    lib = os.path.join(root, "usr", "lib", "syslog-ng")
    version_dirs = [d for d in os.listdir(lib) if re.fullmatch(r"\d+\.\d+", d)]
    if not version_dirs:
        return None, "no module folder under " + lib
    modules = os.path.join(lib, sorted(version_dirs)[-1])
    env = dict(os.environ, LD_LIBRARY_PATH=lib)
    r = subprocess.run([binary, "-V", "--module-path=" + modules], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        return None, "syslog-ng does not run:\n" + r.stdout.decode()[-2000:]
    return {
        "binary": binary,
        "env": env,
        "modules": modules,
        "scl": os.path.join(root, "usr", "share", "syslog-ng", "include", "scl"),
        "version": r.stdout.decode().splitlines()[0],
    }, None


# ---------------------------------------------------------------------------------------------
# Shippers: how each starts on a scenario
# ---------------------------------------------------------------------------------------------

def fill(template, values):
    for k, v in values.items():
        template = template.replace("{{%s}}" % k, str(v))
    left = re.findall(r"\{\{[A-Z_]+\}\}", template)
    if left:
        raise RuntimeError("unfilled placeholders: %s" % ", ".join(sorted(set(left))))
    return template


def read(*parts):
    with open(os.path.join(HERE, *parts)) as f:
        return f.read()


class Weir:
    name = "weir"

    def __init__(self, binary):
        self.binary = binary

    def config_path(self, scenario):
        return os.path.join(HERE, "weir", scenario["key"] + ".toml")

    def env(self, run_dir, values):
        return dict(os.environ,
                    BENCH_DATA_DIR=os.path.join(run_dir, "data"),
                    BENCH_API_ADDRESS="127.0.0.1:%d" % values.get("API_PORT", free_port()),
                    BENCH_INPUT=values.get("INPUT", "/nonexistent"),
                    BENCH_OUTPUT=values.get("OUTPUT", os.path.join(run_dir, "out.log")),
                    BENCH_ES_URL=values.get("ES_URL", "http://127.0.0.1:9"),
                    BENCH_LOKI_URL=values.get("LOKI_URL", "http://127.0.0.1:9"),
                    BENCH_SYSLOG_ADDRESS="127.0.0.1:%d" % values.get("SYSLOG_PORT", 9),
                    BENCH_PODS_DIR=values.get("PODS_DIR", "/nonexistent"),
                    BENCH_OTLP_HTTP_ADDRESS="127.0.0.1:%d" % values.get("OTLP_HTTP_PORT", 9),
                    BENCH_OTLP_GRPC_ADDRESS="127.0.0.1:%d" % values.get("OTLP_GRPC_PORT", 9),
                    BENCH_KAFKA_BOOTSTRAP=values.get("KAFKA_BOOTSTRAP", "127.0.0.1:9"),
                    BENCH_KAFKA_TOPIC=KAFKA_TOPIC,
                    WEIR_LOG=os.environ.get("WEIR_LOG", "warn"))

    def validate(self, scenario, run_dir):
        os.makedirs(run_dir, exist_ok=True)
        r = subprocess.run([self.binary, "validate", self.config_path(scenario)],
                           env=self.env(run_dir, {}), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        return r.returncode == 0, r.stdout.decode(errors="replace")

    def start(self, scenario, run_dir, values, stderr):
        os.makedirs(os.path.join(run_dir, "data"), exist_ok=True)
        return subprocess.Popen([self.binary, "run", "--config", self.config_path(scenario)],
                                env=self.env(run_dir, values), stdout=subprocess.DEVNULL,
                                stderr=stderr)


class Rsyslog:
    name = "rsyslog"

    def __init__(self, binary):
        self.binary = binary

    def supports(self, scenario):
        return os.path.exists(os.path.join(HERE, "rsyslog", scenario["key"] + ".conf"))

    def start(self, scenario, run_dir, values, stderr):
        work = os.path.join(run_dir, "work")
        os.makedirs(work, exist_ok=True)
        values = dict(values, WORK_DIR=work,
                      RULEBASE=os.path.join(HERE, "rsyslog", "s3-access.rulebase"))
        text = read("rsyslog", "common.conf") + "\n" + read("rsyslog", scenario["key"] + ".conf")
        conf = os.path.join(run_dir, "rsyslog.conf")
        with open(conf, "w") as f:
            f.write(fill(text, values))
        return subprocess.Popen([self.binary, "-n", "-f", conf, "-i",
                                 os.path.join(run_dir, "rsyslog.pid")],
                                stdout=subprocess.DEVNULL, stderr=stderr)


class SyslogNg:
    name = "syslog-ng"

    def __init__(self, setup):
        self.setup = setup

    def supports(self, scenario):
        return os.path.exists(os.path.join(HERE, "syslog-ng", scenario["key"] + ".conf"))

    def start(self, scenario, run_dir, values, stderr):
        work = os.path.join(run_dir, "work")
        os.makedirs(work, exist_ok=True)
        values = dict(values, WORK_DIR=work, SCL=self.setup["scl"])
        text = read("syslog-ng", "common.conf") + "\n" + read("syslog-ng",
                                                              scenario["key"] + ".conf")
        conf = os.path.join(run_dir, "syslog-ng.conf")
        with open(conf, "w") as f:
            f.write(fill(text, values))
        s = self.setup
        return subprocess.Popen(
            [s["binary"], "-F", "--no-caps", "--stderr", "--module-path=" + s["modules"],
             "-f", conf, "-R", os.path.join(work, "persist"), "-c", os.path.join(work, "ctl"),
             "-p", os.path.join(work, "pid")],
            env=s["env"], stdout=subprocess.DEVNULL, stderr=stderr)



class Vector:
    """Vector from a binary the user gives (`--peer-bin vector=PATH` or VECTOR_BIN): an official
    release or a build from its source (README, "Peers"). Its configuration is
    `vector/common.toml` followed by the scenario's file."""

    name = "vector"

    def __init__(self, binary):
        self.binary = binary

    def supports(self, scenario):
        return os.path.exists(os.path.join(HERE, "vector", scenario["key"] + ".toml"))

    def start(self, scenario, run_dir, values, stderr):
        data = os.path.join(run_dir, "data")
        os.makedirs(data, exist_ok=True)
        text = read("vector", "common.toml") + "\n" + read("vector", scenario["key"] + ".toml")
        conf = os.path.join(run_dir, "vector.toml")
        with open(conf, "w") as f:
            f.write(fill(text, dict(values, DATA_DIR=data)))
        # Vector's own log at warn, as weir's; its worker threads default to the CPUs it may
        # use, so a run pinned with --cores gets as many threads as cores.
        env = dict(os.environ, VECTOR_LOG=os.environ.get("VECTOR_LOG", "warn"))
        return subprocess.Popen([self.binary, "--config-toml", conf],
                                env=env, stdout=subprocess.DEVNULL, stderr=stderr)


class FluentBit:
    """Fluent Bit from a binary the user gives (`--peer-bin fluent-bit=PATH` or
    FLUENT_BIT_BIN): an official package or a build from its source (README, "Peers"). Each
    scenario's `fluent-bit/<scenario>.yaml` is a whole YAML configuration."""

    name = "fluent-bit"

    def __init__(self, binary):
        self.binary = binary

    def supports(self, scenario):
        return os.path.exists(os.path.join(HERE, "fluent-bit", scenario["key"] + ".yaml"))

    def start(self, scenario, run_dir, values, stderr):
        data = os.path.join(run_dir, "data")
        os.makedirs(data, exist_ok=True)
        # Its file output takes a folder and a file name; its HTTP outputs a host and a port.
        output = values.get("OUTPUT", os.path.join(run_dir, "out.log"))
        loki = values.get("LOKI_URL", "http://127.0.0.1:9")
        values = dict(values, DATA_DIR=data, OUTPUT_DIR=os.path.dirname(output),
                      OUTPUT_FILE=os.path.basename(output),
                      LOKI_PORT=loki.rsplit(":", 1)[1].split("/")[0])
        conf = os.path.join(run_dir, "fluent-bit.yaml")
        with open(conf, "w") as f:
            f.write(fill(read("fluent-bit", scenario["key"] + ".yaml"), values))
        return subprocess.Popen([self.binary, "--config", conf],
                                stdout=subprocess.DEVNULL, stderr=stderr)

    def failed_deliveries(self, stderr_path):
        """Fluent Bit retries a failed flush seconds later (the far end counted what it got
        of it); its log says so. The first such line, or None."""
        with open(stderr_path, errors="replace") as f:
            for line in f:
                if "failed to flush chunk" in line or "[error]" in line:
                    return "Fluent Bit logged a failed delivery, to be sent again: " + \
                        line.strip()
        return None


# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------

SCENARIOS = [
    {"id": 1, "key": "s1-raw", "title": "file -> file (raw; a bound, not a workload)", "data": "loghub", "far": "file",
     "check": "identical"},
    {"id": 2, "key": "s2-json-es", "title": "file -> parse JSON -> Elasticsearch bulk",
     "data": "predictions", "far": "es", "marker": "model_version"},
    {"id": 3, "key": "s3-regex-file", "title": "Apache log -> regex captures -> file",
     "data": "access", "far": "file", "marker": "user_agent"},
    {"id": 4, "key": "s4-syslog-loki", "title": "syslog TCP (octet-counted) -> Loki push",
     "data": "syslog", "far": "loki", "send": "tcp"},
    {"id": 5, "key": "s5-json-es-disk", "title": "scenario 2 + disk buffer",
     "data": "predictions", "far": "es", "marker": "model_version", "needs_validation": True},
    {"id": 6, "key": "s6-model-monitoring",
     "title": "model-server logs -> parse -> metrics + drift -> Elasticsearch bulk",
     "data": "model-servers", "far": "es", "marker": "dataset", "check": "model_monitoring"},
    {"id": 7, "key": "s7-kubernetes-loki",
     "title": "1,000 pods' CRI log files (partial lines joined) -> Loki push",
     "data": "pods", "far": "loki", "check": "joined", "limits": ["cat"]},
    {"id": 8, "key": "s8-otlp-es", "title": "OTLP/HTTP -> Elasticsearch bulk", "data": "otlp",
     "far": "es", "marker": "model_version", "send": "otlp", "limits": ["cat"]},
    {"id": 9, "key": "s9-syslog-es", "title": "syslog TCP from 1,000 connections -> "
     "Elasticsearch bulk", "data": "syslog", "far": "es", "marker": "appname",
     "send": "connections", "connections": 1000},
    {"id": 10, "key": "s10-file-kafka", "title": "file -> Kafka (the agent tier)",
     "data": "model-servers", "far": "kafka", "limits": ["cat", "split"]},
]


class Failed(Exception):
    pass


def run_shipper(shipper, scenario, inp, args, run_dir, bins, cores=None):
    """One timed run of a shipper. Returns a result dict; raises Failed with a reason. With
    `cores`, the shipper may use only the first `cores` CPUs and the endpoint the others (all
    of them when none are left)."""
    every = sorted(os.sched_getaffinity(0))
    shipper_cpus = set(every[:cores]) if cores else None
    other_cpus = (set(every) - shipper_cpus or set(every)) if cores else None
    path, events, size = inp
    os.makedirs(run_dir, exist_ok=True)
    stderr_path = os.path.join(run_dir, "stderr")
    values = {"INPUT": path, "OUTPUT": os.path.join(run_dir, "out.log"),
              "API_PORT": free_port()}
    endpoint = None
    counter = None
    broker = None
    proc = None
    sender = None
    result = {"shipper": shipper.name, "events": events, "bytes": size}
    try:
        if scenario["far"] == "kafka":
            with pinned(other_cpus):
                broker = KafkaBroker(bins["tansu"], run_dir)
            values["KAFKA_BOOTSTRAP"] = broker.bootstrap
        if scenario["far"] in ("es", "loki"):
            with pinned(other_cpus):
                endpoint = Endpoint(bins["endpoint"], scenario.get("marker"))
            values["ES_URL"] = values["LOKI_URL"] = endpoint.url
            values["ES_PORT"] = endpoint.addr.rsplit(":", 1)[1]
        if scenario["far"] == "file":
            counter = LineCounter(values["OUTPUT"])
        if scenario["data"] == "syslog":
            values["SYSLOG_PORT"] = free_port()
        if scenario["data"] == "pods":
            values["PODS_DIR"] = path
        if scenario["data"] == "otlp":
            values["OTLP_HTTP_PORT"], values["OTLP_GRPC_PORT"] = free_port(), free_port()
        if scenario.get("check") == "model_monitoring":
            values["METRICS_PORT"] = free_port()

        # An output that must equal the input is complete when it has the input's size:
        # `stat` every millisecond costs the run nothing, where counting lines reads the whole
        # output again on the second core while the shipper runs (and a run of 0.1 s was
        # seen to the nearest 10 ms). The lines are counted after the clock stops.
        by_size = counter is not None and scenario.get("check") == "identical"
        target = size if by_size else events
        pause = 0.001 if by_size else 0.01

        def seen():
            if by_size:
                try:
                    return os.path.getsize(values["OUTPUT"])
                except FileNotFoundError:
                    return 0
            if counter:
                return counter.poll()
            if broker:
                return broker.records()
            s = endpoint.stats()
            return s["es_docs"] if scenario["far"] == "es" else s["loki_entries"]

        def events_seen(n):
            return counter.poll() if by_size else n

        with open(stderr_path, "wb") as err:
            t0 = time.monotonic()
            with pinned(shipper_cpus):
                proc = shipper.start(scenario, run_dir, values, err)
            if scenario.get("send"):
                port = values["OTLP_HTTP_PORT" if scenario["send"] == "otlp" else "SYSLOG_PORT"]
                if not wait_listening(port, proc):
                    raise Failed("did not listen on port %d:\n%s" % (port, tail(stderr_path)))
                if scenario["send"] == "otlp":
                    sender = OtlpSender(port, path, other_cpus)
                elif scenario["send"] == "connections":
                    sender = ManySender(port, path, scenario["connections"])
                else:
                    sender = Sender(port, path)
                sender.prepare()
                t0 = time.monotonic()
                sender.start()
            # When the count last grew: a long gap before the last delivery is a batch that
            # waited for its timer after the input ran out.
            last, last_change = 0, time.monotonic()
            while True:
                n = seen()
                now = time.monotonic()
                if n >= target:
                    break
                if n != last:
                    last, last_change = n, now
                if proc.poll() is not None:
                    raise Failed("exited with %s after %d of %d events:\n%s" % (
                        proc.returncode, events_seen(n), events, tail(stderr_path)))
                if now - last_change > args.stall or now - t0 > args.timeout:
                    raise Failed("%d of %d events after %.0f s (stalled %.0f s):\n%s" % (
                        events_seen(n), events, now - t0, now - last_change,
                        tail(stderr_path)))
                time.sleep(pause)
            t_end = time.monotonic()
            cpu, rss = proc_usage(proc.pid)
            result.update(elapsed=t_end - t0, cpu=cpu, rss=rss, seen=events_seen(n),
                          last_gap=now - last_change)
            if endpoint:
                result["endpoint_cpu"] = endpoint.cpu()
            if broker:
                result["endpoint_cpu"] = broker.cpu()
            if sender:
                sender.join()
                if sender.error:
                    raise Failed("sending failed: %s" % sender.error)
                result["sender_cpu"] = sender.cpu
                if sender.first is not None:
                    # The clock runs from the first request the load generator made.
                    result["elapsed"] = t_end - sender.first
        # Checks at the far end, after the clock stopped.
        notes = []
        if endpoint:
            # Let anything in flight arrive, so that duplicates would show.
            time.sleep(0.3)
            s = endpoint.stats()
            result["far_end"] = s
            if s["refused"]:
                notes.append("%d requests refused" % s["refused"])
            if scenario["far"] == "es":
                result["seen"] = s["es_docs"]
                result["delivered_bytes"] = s["es_body_bytes"]
                if s["es_marked"] != s["es_docs"]:
                    raise Failed("%d of %d documents lack the parsed field %r" % (
                        s["es_docs"] - s["es_marked"], s["es_docs"], scenario["marker"]))
            else:
                result["seen"] = s["loki_entries"]
                result["delivered_bytes"] = s["loki_body_bytes"]
                if s["loki_empty_lines"]:
                    raise Failed("%d entries have an empty line" % s["loki_empty_lines"])
            if scenario.get("check") == "joined":
                # Each record's parts joined into one line: the lines hold exactly the bytes of
                # the records' messages, which lines cut at the parts, or kept with their CRI
                # prefix, would not.
                expected = facts_of(path)["line_bytes"]
                if s["loki_line_bytes"] != expected:
                    raise Failed("the entries' lines hold %d bytes, the records' messages %d" % (
                        s["loki_line_bytes"], expected))
                notes.append("every partial record joined (the lines hold the messages' %d "
                             "bytes)" % expected)
            if scenario.get("check") == "model_monitoring" and s["es_docs"] == events:
                notes += check_model_monitoring(shipper, scenario, values, facts_of(path))
        elif broker:
            # Let anything in flight arrive, so that duplicates would show.
            time.sleep(0.3)
            result["seen"] = broker.records()
        else:
            stop(proc)
            result["seen"] = counter.poll()
            result["delivered_bytes"] = os.path.getsize(values["OUTPUT"])
            if scenario.get("check") == "identical":
                if result["delivered_bytes"] == size and \
                        file_digest(values["OUTPUT"]) == file_digest(path, cache=True):
                    notes.append("output identical to input")
                else:
                    notes.append("output differs from input (%d bytes, input %d)" % (
                        result["delivered_bytes"], size))
            if scenario.get("marker"):
                marked = count_in_file(values["OUTPUT"], b'"%s":' % scenario["marker"].encode())
                if marked != result["seen"]:
                    raise Failed("%d of %d output lines lack the parsed field %r" % (
                        result["seen"] - marked, result["seen"], scenario["marker"]))
        if result["seen"] != events:
            raise Failed("delivered %d events for %d input events" % (result["seen"], events))
        # A flush the peer logged as failed is sent again later, after these checks: the far
        # end would get duplicates the count above cannot see yet.
        why = shipper.failed_deliveries(stderr_path) if hasattr(shipper, "failed_deliveries") \
            else None
        if why:
            raise Failed(why)
        result["notes"] = notes
        return result
    finally:
        stop(proc)
        if counter:
            counter.close()
        if broker:
            broker.close()
        if endpoint:
            log_err = endpoint.close()
            if log_err.strip():
                with open(os.path.join(run_dir, "endpoint.stderr"), "w") as f:
                    f.write(log_err)
        if sender:
            sender.join()
            sender.close()


class Sender(threading.Thread):
    """Sends a file of octet-counted frames over one TCP connection with sendfile(2)."""

    first = None

    def __init__(self, port, path):
        super().__init__(daemon=True)
        self.port = port
        self.path = path
        self.error = None
        self.cpu = 0.0

    def prepare(self):
        pass

    def close(self):
        pass

    def run(self):
        start = time.thread_time()
        try:
            with socket.create_connection(("127.0.0.1", self.port)) as s, \
                    open(self.path, "rb") as f:
                s.sendfile(f)
                s.shutdown(socket.SHUT_WR)
                # Wait for the receiver to close, so its reads are not cut short.
                s.settimeout(600)
                while s.recv(65536):
                    pass
        except OSError as e:
            self.error = str(e)
        self.cpu = time.thread_time() - start


FRAME_BOUNDS = {}


def frame_ranges(path, n):
    """A file of octet-counted frames cut into `n` runs of whole frames of about equal size:
    [(start, end)], one per connection."""
    if path not in FRAME_BOUNDS:
        bounds = []
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            at = 0
            while at < len(data):
                space = data.find(b" ", at, at + 12)
                if space < 0:
                    raise RuntimeError("%s: no octet count at byte %d" % (path, at))
                at = space + 1 + int(data[at:space])
                bounds.append(at)
        FRAME_BOUNDS[path] = bounds
    bounds = FRAME_BOUNDS[path]
    size = bounds[-1]
    cuts = [0] + [bounds[bisect.bisect_left(bounds, size * k // n)] for k in range(1, n)] + [size]
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


class ManySender(threading.Thread):
    """Sends a file of octet-counted frames over many TCP connections at once, each a run of
    whole frames, from one thread: sendfile(2) on non-blocking sockets as each can take more.
    The connections are made before the clock starts (`prepare`); each is half-closed when its
    part is sent and closed when the run ends."""

    first = None

    def __init__(self, port, path, connections):
        super().__init__(daemon=True)
        self.port = port
        self.path = path
        self.connections = connections
        self.socks = []
        self.error = None
        self.cpu = 0.0

    def prepare(self):
        self.ranges = frame_ranges(self.path, self.connections)
        for _ in self.ranges:
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            except OSError as e:
                raise Failed("connection %d of %d failed: %s" % (
                    len(self.socks) + 1, len(self.ranges), e))
            s.setblocking(False)
            self.socks.append(s)

    def run(self):
        start = time.thread_time()
        try:
            with open(self.path, "rb") as f, selectors.DefaultSelector() as sel:
                left = {}
                for s, (a, b) in zip(self.socks, self.ranges):
                    left[s] = [a, b]
                    sel.register(s, selectors.EVENT_WRITE)
                while left:
                    ready = sel.select(timeout=600)
                    if not ready:
                        raise OSError("no connection could take more for 600 s")
                    for key, _ in ready:
                        s = key.fileobj
                        part = left[s]
                        try:
                            part[0] += os.sendfile(s.fileno(), f.fileno(), part[0],
                                                   part[1] - part[0])
                        except BlockingIOError:
                            continue
                        if part[0] >= part[1]:
                            s.shutdown(socket.SHUT_WR)
                            sel.unregister(s)
                            del left[s]
        except OSError as e:
            self.error = "%s (%d connections)" % (e, len(self.socks))
        self.cpu = time.thread_time() - start

    def close(self):
        for s in self.socks:
            s.close()


class OtlpSender:
    """otlp_load.py sending the export requests over OTLP/HTTP (protobuf, keep-alive
    connections), 8 in flight as otlp.py does, each sent again while it is answered "retry
    later". `first` is when it made its first request (CLOCK_MONOTONIC, shared by the
    machine's processes)."""

    CONCURRENCY = 8

    def __init__(self, port, path, cpus):
        self.port = port
        self.path = path
        self.cpus = cpus
        self.proc = None
        self.error = None
        self.cpu = 0.0
        self.first = None

    def prepare(self):
        pass

    def start(self):
        with pinned(self.cpus):
            self.proc = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "otlp_load.py"), "http", str(self.port),
                 str(self.CONCURRENCY), self.path],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def join(self):
        if self.proc is None or self.proc.returncode is not None:
            return
        out, err = self.proc.communicate()
        if self.proc.returncode != 0:
            self.error = "otlp_load.py exited with %d: %s" % (
                self.proc.returncode, err.decode(errors="replace").strip()[-500:])
            return
        report = json.loads(out)
        self.cpu, self.first = report["cpu"], report["first"]

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()


def prometheus_samples(url):
    """[(name, {label: value}, value)] of a Prometheus text exposition."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)', line)
        if m:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out.append((m.group(1), labels, float(m.group(3))))
    return out


def check_model_monitoring(shipper, scenario, values, facts):
    """Scenario 6's far end beyond the documents: the requests counted on the shipper's
    Prometheus endpoint (weir's API; Vector's `prometheus_exporter`) equal the input's, and
    for weir, every drift window the input fills was reported (the reports file) and its
    scores are on /metrics. Waits up to 60 s for them (they travel beside the documents, not
    before them). Returns notes; raises Failed."""
    port = values["API_PORT"] if shipper.name == "weir" else values["METRICS_PORT"]
    url = "http://127.0.0.1:%d/metrics" % port
    expected = facts["requests"]
    windows = None
    if shipper.name == "weir":
        with open(os.path.join(HERE, "weir", scenario["key"] + ".toml"), "rb") as f:
            drift = tomllib.load(f)["transforms"]["drift"]
        baseline, per_window = drift["baseline_events"], drift["window"]["count"]
        windows = sum(max(0, n - baseline) // per_window
                      for k, n in facts.items() if k.startswith("predictions "))
    features = sum(len(f) for f in PREDICTION_FEATURES.values())
    deadline = time.monotonic() + 60
    while True:
        try:
            samples = prometheus_samples(url)
        except OSError as e:
            raise Failed("cannot read %s: %s" % (url, e))
        requests = sum(v for name, _, v in samples if name.endswith("model_requests_total"))
        reports = count_in_file(values["OUTPUT"], b"\n") if windows is not None and \
            os.path.exists(values["OUTPUT"]) else 0
        scored = {(lb.get("model"), lb.get("feature")) for name, lb, _ in samples
                  if name == "weir_feature_drift_score"}
        done = requests == expected and (windows is None or (
            reports == windows and len(scored) == features))
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if requests != expected:
        raise Failed("%s counted %d requests on /metrics, the input has %d" % (
            shipper.name, requests, expected))
    if windows is None:
        return ["%d requests counted on the metrics endpoint (%s has no drift)" % (
            requests, shipper.name)]
    if reports != windows:
        raise Failed("%d drift reports written, the input fills %d windows" % (reports, windows))
    if len(scored) != features:
        raise Failed("drift scores on /metrics for %d model features, not %d: %s" % (
            len(scored), features, sorted(scored)))
    drifted = sum(1 for name, _, v in samples if name == "weir_feature_drift_detected" and v)
    return ["%d requests counted on /metrics, %d drift windows reported, %d features scored "
            "(%d drifted in their last window)" % (requests, windows, features, drifted)]


def cat_command(path):
    """`cat` of an input: its file, or every file of its folder (scenario 7's pods)."""
    if os.path.isdir(path):
        return ["sh", "-c", 'find "$1" -type f -print0 | xargs -0 cat', "sh", path]
    return ["cat", path]


def wait_usage(proc):
    """Waits for a child; (exit status, its resource usage from the kernel)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage


def run_limit(kind, scenario, inp, bins, run_dir):
    """The machine's limit: `cat` to /dev/null, or bench_split; for a scenario that writes a
    file, `copy` too: `cat` to a new file where the shipper's output would be."""
    path, events, size = inp
    os.makedirs(run_dir, exist_ok=True)
    result = {"shipper": kind, "events": events, "bytes": size}
    if kind in ("cat", "copy"):
        t0 = time.monotonic()
        target = os.path.join(run_dir, "out.log") if kind == "copy" else os.devnull
        with open(target, "wb") as out:
            proc = subprocess.Popen(cat_command(path), stdout=out)
            status, usage = wait_usage(proc)
        elapsed = time.monotonic() - t0
        result["seen"] = events
    elif scenario["data"] == "syslog":
        proc = subprocess.Popen([bins["split"], "octets", "127.0.0.1:0", str(events)],
                                stdout=subprocess.PIPE)
        port = int(read_listening_line(proc, "bench_split").rsplit(":", 1)[1])
        sender = Sender(port, path)
        t0 = time.monotonic()
        sender.start()
        out = proc.stdout.read()
        status, usage = wait_usage(proc)
        elapsed = time.monotonic() - t0
        sender.join()
        result["seen"] = json.loads(out)["events"]
        result["peak_rss"] = json.loads(out)["peak_rss"]
        result["sender_cpu"] = sender.cpu
    else:
        t0 = time.monotonic()
        proc = subprocess.Popen([bins["split"], "lines", path], stdout=subprocess.PIPE)
        out = proc.stdout.read()
        status, usage = wait_usage(proc)
        elapsed = time.monotonic() - t0
        result["seen"] = json.loads(out)["events"]
        result["peak_rss"] = json.loads(out)["peak_rss"]
    if status != 0:
        raise Failed("%s exited with status %d" % (kind, status))
    if result["seen"] != events:
        raise Failed("%s counted %d events for %d" % (kind, result["seen"], events))
    # The kernel's ru_maxrss of a child started from Python includes Python's own pages
    # (exec records the old address space's peak), so bench_split reports its own VmHWM and
    # cat's is not measured.
    result.update(elapsed=elapsed, cpu=usage.ru_utime + usage.ru_stime,
                  rss=result.pop("peak_rss", None), notes=[])
    return result


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------

def label(name, cores):
    return name if cores is None else "%s (%d core%s)" % (name, cores, "" if cores == 1 else "s")


def summarize(name, results, failures, runs):
    if not results:
        return "| %s | failed | | | | | 0/%d |" % (name, runs)
    rates = [r["bytes"] / MIB / r["elapsed"] for r in results]
    med_rate = statistics.median(rates)
    events = statistics.median(r["events"] / r["elapsed"] for r in results)
    cpu_gib = statistics.median(r["cpu"] / (r["bytes"] / GIB) for r in results)
    rss = [r["rss"] / MIB for r in results if r["rss"] is not None]
    rss_text = "%.1f (max %.1f)" % (statistics.median(rss), max(rss)) if rss else "-"
    spread = (max(rates) - min(rates)) / med_rate * 100 if med_rate else 0
    return "| %s | %.1f | %s | %.2f | %s | %.1f-%.1f (%.0f%%) | %d/%d |" % (
        name, med_rate, "{:,.0f}".format(events), cpu_gib, rss_text, min(rates), max(rates),
        spread, len(results), runs)


TABLE_HEAD = ("| shipper | MiB/s | events/s | CPU s per GiB | peak RSS MiB | spread MiB/s "
              "(min-max) | runs ok |\n|---|---|---|---|---|---|---|")
STANDING_BEGIN = "<!-- standing table: written by benches/compare/run.py --write-benchmarks -->"
STANDING_END = "<!-- end of the standing table -->"


LIMITS = ("cat", "copy", "split")


def ratios(results):
    """weir against each peer run beside it (same pinning): throughput and CPU per GiB as
    ratios of the medians, the figures the goals of issue 29 are stated in."""
    def med(rs, f):
        return statistics.median(f(r) for r in rs)

    out = []
    for key, rs in sorted(results.items()):
        if not key.startswith("weir") or not rs:
            continue
        suffix = key[len("weir"):]
        for peer, ps in sorted(results.items()):
            if peer.startswith("weir") or peer in LIMITS or not peer.endswith(suffix) or \
                    not ps or (suffix == "" and "(" in peer):
                continue
            rate = med(rs, lambda r: r["bytes"] / r["elapsed"]) / \
                med(ps, lambda r: r["bytes"] / r["elapsed"])
            cpu = med(ps, lambda r: r["cpu"] / r["bytes"]) / med(rs, lambda r: r["cpu"] / r["bytes"])
            out.append("%s against %s: %.1fx the throughput, %.1fx less CPU per GiB" % (
                key, peer, rate, cpu))
    for key, one in sorted(results.items()):
        two = results.get(key.replace("(1 core)", "(2 cores)"))
        if key.endswith("(1 core)") and one and two:
            out.append("%s from one core to two: %.2fx the throughput" % (
                key[:-len(" (1 core)")], med(two, lambda r: r["bytes"] / r["elapsed"]) /
                med(one, lambda r: r["bytes"] / r["elapsed"])))
    return out


def write_standing(header, standing, skipped_peers):
    """Replaces the standing table between its two markers at the top of BENCHMARKS.md."""
    out = [STANDING_BEGIN, ""]
    out += ["- " + line for line in header]
    out += ["- %s: not run (%s)" % (name, why.splitlines()[0])
            for name, why in skipped_peers.items()]
    for sc, (path, events, size), rows, notes in standing:
        out += ["", "### %d. %s" % (sc["id"], sc["title"]), "",
                "%s, %s events, %.1f MiB" % (os.path.basename(path), "{:,}".format(events),
                                            size / MIB), "", TABLE_HEAD] + rows
        out += ["- " + n for n in notes]
    out += ["", STANDING_END]
    bench = os.path.join(ROOT, "BENCHMARKS.md")
    with open(bench) as f:
        text = f.read()
    start, end = text.find(STANDING_BEGIN), text.find(STANDING_END)
    if start < 0 or end < start:
        sys.exit("BENCHMARKS.md has no standing table markers (%s ... %s)" % (
            STANDING_BEGIN, STANDING_END))
    text = text[:start] + "\n".join(out) + text[end + len(STANDING_END):]
    with open(bench, "w") as f:
        f.write(text)


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / (1 << 20)
    except OSError:
        mem = 0
    return "%d CPUs (%s), %.0f GiB, Linux %s" % (os.cpu_count(), model, mem,
                                                  platform.release())


def version_of(cmd, env=None):
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                           timeout=10)
        return r.stdout.decode(errors="replace").splitlines()[0].strip()
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=256,
                    help="size of each generated input (default 256)")
    ap.add_argument("--runs", type=int, default=3, help="runs per shipper and scenario")
    ap.add_argument("--scenario", type=int, action="append", help="only these (1-10)")
    ap.add_argument("--shipper", action="append",
                    help="only these: weir, vector, fluent-bit, rsyslog, syslog-ng, cat, "
                    "copy, split")
    ap.add_argument("--peer-bin", action="append", default=[], metavar="NAME=PATH",
                    help="a peer's binary, e.g. vector=/opt/vector/bin/vector (or VECTOR_BIN), "
                    "fluent-bit=/opt/fluent-bit/bin/fluent-bit (or FLUENT_BIT_BIN); a peer "
                    "without one is left out")
    ap.add_argument("--cores", type=int, action="append", metavar="N",
                    help="run every shipper pinned to its first N CPUs (the endpoint on the "
                    "others), once per --cores given: --cores 1 --cores 2 shows the scaling")
    ap.add_argument("--write-benchmarks", action="store_true",
                    help="replace the standing table at the top of BENCHMARKS.md with this "
                    "run's")
    ap.add_argument("--timeout", type=float, default=900, help="seconds a run may take")
    ap.add_argument("--stall", type=float, default=60,
                    help="seconds without progress before a run is failed")
    ap.add_argument("--no-build", action="store_true",
                    help="use the binaries already built (release profile)")
    ap.add_argument("--keep", action="store_true", help="keep each run's directory")
    ap.add_argument("--json", help="also write every run's figures to this file (they are "
                    "always written to results.json in the run's folder)")
    args = ap.parse_args()

    release = os.path.join(TARGET, "release")
    # WEIR_BIN names another weir binary (to compare builds); the helpers stay the built ones.
    bins = {"weir": os.environ.get("WEIR_BIN") or os.path.join(release, "weir"),
            "endpoint": os.path.join(release, "examples", "bench_endpoint"),
            "split": os.path.join(release, "examples", "bench_split")}
    if not args.no_build:
        log("building weir and the benchmark's helpers (release) ...")
        # weir alone: built beside the examples it would get the dev-dependencies' features
        # (tokio's test-util), and not be the binary `cargo build --release` makes.
        subprocess.run(["cargo", "build", "--release", "--example", "bench_endpoint",
                        "--example", "bench_split"], cwd=ROOT, check=True)
        subprocess.run(["cargo", "build", "--release", "--bin", "weir"], cwd=ROOT, check=True)
    for b in bins.values():
        if not os.path.exists(b):
            sys.exit("missing %s: build without --no-build" % b)
    # Scenario 10's broker; without it that scenario is skipped.
    bins["tansu"] = find_tansu()

    peer_bins = {"vector": os.environ.get("VECTOR_BIN"),
                 "fluent-bit": os.environ.get("FLUENT_BIT_BIN")}
    for item in args.peer_bin:
        name, sep, path = item.partition("=")
        if not sep or not path:
            sys.exit("--peer-bin takes NAME=PATH, not %r" % item)
        peer_bins[name] = path
    wanted = set(args.shipper or ["weir", "vector", "fluent-bit", "rsyslog", "syslog-ng",
                                  "cat", "copy", "split"])
    shippers = []
    skipped_peers = {}
    if "weir" in wanted:
        shippers.append(Weir(bins["weir"]))
    for name, cls, env in [("vector", Vector, "VECTOR_BIN"),
                           ("fluent-bit", FluentBit, "FLUENT_BIT_BIN")]:
        if name not in wanted:
            continue
        binary = peer_bins.get(name)
        if not binary:
            skipped_peers[name] = ("no binary given: --peer-bin %s=PATH or %s "
                                   "(benches/compare/README.md, Peers)" % (name, env))
        elif not os.access(binary, os.X_OK):
            skipped_peers[name] = "%s is not an executable file" % binary
        else:
            shippers.append(cls(binary))
    if "rsyslog" in wanted:
        binary, why = setup_rsyslog()
        if binary:
            shippers.append(Rsyslog(binary))
        else:
            skipped_peers["rsyslog"] = why
    if "syslog-ng" in wanted:
        setup, why = setup_syslog_ng()
        if setup:
            shippers.append(SyslogNg(setup))
        else:
            skipped_peers["syslog-ng"] = why
    for name, why in skipped_peers.items():
        log("%s is not available and is left out: %s" % (name, why))

    scenarios = [s for s in SCENARIOS if not args.scenario or s["id"] in args.scenario]
    runs_root = os.path.join(CACHE, "runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    weir_version = version_of(["git", "-C", ROOT, "describe", "--always", "--dirty"])
    if os.environ.get("WEIR_BIN"):
        # The harness cannot tell which commit another binary was built from.
        weir_version = "WEIR_BIN %s (harness at %s)" % (
            os.path.basename(os.environ["WEIR_BIN"]), weir_version)
    syslog_ng_version = next((s.setup["version"] for s in shippers if s.name == "syslog-ng"),
                             "not run")
    header = [
        "command: " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
        "date: " + datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine: " + machine(),
        "weir: %s; vector: %s; fluent-bit: %s; rsyslog: %s; syslog-ng: %s" % (
            weir_version,
            next((version_of([s.binary, "--version"]) for s in shippers if s.name == "vector"),
                 "not run"),
            next((version_of([s.binary, "--version"]) for s in shippers
                  if s.name == "fluent-bit"), "not run"),
            " ".join(version_of([shutil.which("rsyslogd") or "rsyslogd", "-v"]).split()[:2])
            if any(
                s.name == "rsyslog" for s in shippers) else "not run",
            syslog_ng_version),
        "runs: %d per shipper, interleaved%s; load average at start: %.2f" % (
            args.runs, "; pinned to %s CPUs" % " and ".join(map(str, args.cores))
            if args.cores else "", loadavg()),
    ]
    print("\n".join(header), flush=True)
    all_results = {"header": header, "scenarios": []}
    standing = []
    harness_cpu0 = time.process_time()

    for sc in scenarios:
        inp = dataset(sc["data"], args.size_mib)
        path, events, size = inp
        print("\n### %d. %s\n" % (sc["id"], sc["title"]), flush=True)
        print("input: %s, %s events, %.1f MiB" % (
            os.path.basename(path), "{:,}".format(events), size / MIB), flush=True)
        weir = next((s for s in shippers if s.name == "weir"), None)
        if sc.get("needs_validation"):
            probe = weir or Weir(bins["weir"])
            ok, out = probe.validate(sc, os.path.join(runs_root, sc["key"], "validate"))
            if not ok:
                print("skipped: weir's configuration %s does not validate (no disk buffer "
                      "in this weir yet):\n%s" % (
                          os.path.relpath(probe.config_path(sc), ROOT), out.strip()),
                      flush=True)
                all_results["scenarios"].append({"id": sc["id"], "skipped": out})
                continue
        if sc["far"] == "kafka" and not bins["tansu"]:
            why = ("the Kafka broker tansu is not installed (scripts/install-test-deps.sh, or "
                   "cargo install tansu --version 0.6.0 --locked --features dynostore,libsql)")
            print("skipped: " + why, flush=True)
            all_results["scenarios"].append({"id": sc["id"], "skipped": why})
            continue
        # Page cache: read the input once, so the first run does not pay for the disk.
        subprocess.run(cat_command(path), stdout=subprocess.DEVNULL)
        load_start = loadavg()
        results = {}
        failures = {}
        order = []
        for kind in sc.get("limits", ["cat", "copy", "split"]):
            if kind in wanted and (kind != "copy" or sc["far"] == "file"):
                order.append(("limit", kind, None))
        for s in shippers:
            if s.name == "weir" or s.supports(sc):
                for cores in args.cores or [None]:
                    order.append(("shipper", s, cores))
            else:
                failures.setdefault(s.name, []).append("no configuration for this scenario")
        for r in range(args.runs):
            for what, s, cores in order:
                name = s if what == "limit" else label(s.name, cores)
                run_dir = os.path.join(runs_root, sc["key"],
                                       "%s-%d" % (name.replace(" ", "-"), r + 1))
                try:
                    if what == "limit":
                        res = run_limit(s, sc, inp, bins, run_dir)
                    else:
                        res = run_shipper(s, sc, inp, args, run_dir, bins, cores)
                    res["load_end"] = loadavg()
                    results.setdefault(name, []).append(res)
                    log("  %s run %d: %.2f s, %.1f MiB/s, CPU %.2f s, RSS %s MiB%s" % (
                        name, r + 1, res["elapsed"], size / MIB / res["elapsed"], res["cpu"],
                        "-" if res["rss"] is None else "%.0f" % (res["rss"] / MIB),
                        "; " + "; ".join(res["notes"]) if res.get("notes") else ""))
                    if not args.keep:
                        shutil.rmtree(run_dir, ignore_errors=True)
                except Failed as e:
                    failures.setdefault(name, []).append(str(e))
                    log("  %s run %d FAILED: %s (kept %s)" % (name, r + 1, e, run_dir))
        load_end = loadavg()
        print("load average: %.2f at start, %.2f at end\n" % (load_start, load_end))
        print(TABLE_HEAD)
        names = [("limit: " + k, k) for w, k, _ in order if w == "limit"] + \
                [(label(s.name, c),) * 2 for w, s, c in order if w == "shipper"]
        rows = [summarize(row_name, results.get(key, []), failures.get(key, []), args.runs)
                for row_name, key in names]
        print("\n".join(rows))
        standing.append((sc, inp, rows, [
            "%s: %s" % (key, sorted(set(reasons))[0].splitlines()[0])
            for key, reasons in failures.items() if key not in skipped_peers and reasons]
            + ratios(results)))
        for key, reasons in failures.items():
            if key in skipped_peers:
                continue
            for reason in sorted(set(reasons)):
                first = reason.splitlines()[0] if reason else ""
                print("- %s: %s" % (key, first))
        extra = []
        for key, rs in results.items():
            ep = [r for r in rs if r.get("endpoint_cpu")]
            if ep:
                extra.append(
                    "%s: endpoint CPU %.2f s per run against the shipper's %.2f s (the endpoint "
                    "takes %s events per CPU second)" % (
                        key, statistics.median(r["endpoint_cpu"] for r in ep),
                        statistics.median(r["cpu"] for r in rs),
                        "{:,.0f}".format(statistics.median(r["events"] / r["endpoint_cpu"]
                                                           for r in ep))))
            gaps = [r["last_gap"] for r in rs if "last_gap" in r]
            if gaps:
                extra.append("%s: the last delivery came %.2f s after the one before it "
                             "(run time %.2f s)" % (key, statistics.median(gaps),
                                                    statistics.median(r["elapsed"] for r in rs)))
            snd = [r["sender_cpu"] for r in rs if "sender_cpu" in r]
            if snd:
                extra.append("%s: sender CPU %.2f s per run" % (key, statistics.median(snd)))
            delivered = [r["delivered_bytes"] for r in rs if "delivered_bytes" in r]
            if delivered:
                extra.append("%s: %.1f MiB delivered per run%s" % (
                    key, statistics.median(delivered) / MIB,
                    "; " + "; ".join(sorted(set(n for r in rs for n in r["notes"])))
                    if any(r["notes"] for r in rs) else ""))
        for line in extra + ratios(results):
            print("- " + line)
        for name, why in skipped_peers.items():
            print("- %s: not available (%s)" % (name, why.splitlines()[0]))
        sys.stdout.flush()
        all_results["scenarios"].append({
            "id": sc["id"], "title": sc["title"], "input": {"events": events, "bytes": size},
            "load_start": load_start, "load_end": load_end, "results": results,
            "failures": failures})

    print("\nharness CPU (generation, polling, checks): %.1f s; load average at end: %.2f" % (
        time.process_time() - harness_cpu0, loadavg()))
    os.makedirs(runs_root, exist_ok=True)
    for out in [os.path.join(runs_root, "results.json")] + ([args.json] if args.json else []):
        with open(out, "w") as f:
            json.dump(all_results, f, indent=1, default=str)
    print("every run's figures: " + os.path.join(runs_root, "results.json"))
    if args.write_benchmarks:
        write_standing(header, standing, skipped_peers)
        print("BENCHMARKS.md: standing table replaced")


if __name__ == "__main__":
    main()
