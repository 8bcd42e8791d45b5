"""OTLP load generator for benches/compare/otlp.py: sends pre-encoded ExportLogsServiceRequest
messages to weir over OTLP/HTTP (protobuf, keep-alive connections) or OTLP/gRPC (grpcio), with
several requests in flight, each sent again while it is answered "retry later" or, over
HTTP, while its connection fails (closed without an answer).

usage: otlp_load.py http|grpc PORT CONCURRENCY REQUESTS_FILE

REQUESTS_FILE holds the messages, each as a 4-byte big-endian length and the bytes. Prints one
JSON line at the end: requests, retries, CPU seconds of this process (its own cost, to show it
is not the bottleneck), and `first`, when the first request was about to be sent (seconds of
CLOCK_MONOTONIC, the clock every process of the machine shares, for run.py's timing).
"""

import http.client
import json
import struct
import sys
import threading
import time

EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def read_requests(path):
    out = []
    with open(path, "rb") as f:
        data = f.read()
    at = 0
    while at < len(data):
        (n,) = struct.unpack_from(">I", data, at)
        out.append(data[at + 4 : at + 4 + n])
        at += 4 + n
    return out


# How long a request is sent again while the connection fails before the run is given up.
CONNECTION_RETRY_SECONDS = 60


def http_worker(port, queue, lock, stats):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    while True:
        with lock:
            if not queue:
                return
            body = queue.pop()
        failing_since = None
        while True:
            try:
                conn.request("POST", "/v1/logs", body, {"Content-Type": "application/x-protobuf"})
                r = conn.getresponse()
                r.read()
            except (OSError, http.client.HTTPException) as e:
                # A receiver that pauses its listener under backpressure closes connections
                # without an answer (Fluent Bit does); the OTLP specification has the client
                # send the request again on a new connection, as the SDKs' exporters do.
                conn.close()
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > CONNECTION_RETRY_SECONDS:
                    raise SystemExit("connection failing for %d s: %s" % (
                        CONNECTION_RETRY_SECONDS, e))
                with lock:
                    stats["retries"] += 1
                time.sleep(0.05)
                continue
            failing_since = None
            if r.status == 200:
                break
            if r.status not in (429, 503):
                raise SystemExit("HTTP %d" % r.status)
            with lock:
                stats["retries"] += 1
            time.sleep(0.05)


def grpc_worker(channel, queue, lock, stats):
    import grpc

    call = channel.unary_unary(EXPORT)
    while True:
        with lock:
            if not queue:
                return
            body = queue.pop()
        while True:
            try:
                call(body, timeout=120)
                break
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                with lock:
                    stats["retries"] += 1
                time.sleep(0.05)


def main():
    transport, port, concurrency, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    queue = read_requests(path)
    queue.reverse()
    total = len(queue)
    lock = threading.Lock()
    stats = {"retries": 0}
    cpu0 = time.process_time()
    if transport == "grpc":
        import grpc

        channel = grpc.insecure_channel("127.0.0.1:%d" % port)
        threads = [threading.Thread(target=grpc_worker, args=(channel, queue, lock, stats)) for _ in range(concurrency)]
    else:
        threads = [threading.Thread(target=http_worker, args=(port, queue, lock, stats)) for _ in range(concurrency)]
    first = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"requests": total, "retries": stats["retries"], "cpu": time.process_time() - cpu0, "first": first}), flush=True)


if __name__ == "__main__":
    main()
