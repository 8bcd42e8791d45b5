"""Hand-made OTLP/gRPC calls with grpcio, for what an SDK never sends.

usage: otlp_grpc_raw.py TARGET CASE...

TARGET is host:port. Each CASE is one call; the script prints one JSON line per case with
the answer: {"case", "code", "details", "rejected", "message", "retry_delay"} (`rejected` and
`message` from a partial success). Cases: `ok` (one record, body "plain"), `mixed` (records
"mixed-0" to "mixed-4", those with an odd number carrying a trace id), `gzip` (one record, "zipped", gzip-compressed), `garbage` (bytes that are not
a protobuf message), `traces` (the trace service, which weir does not serve), `large` (a
record of LARGE bytes, from the environment), `large_gzip` (the same, compressed).
From the environment: OTLP_TOKEN (sent as `authorization: Bearer`), OTLP_CA_FILE (TLS).
"""

import json
import os
import sys

import grpc
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def request(message):
    r = ExportLogsServiceRequest()
    resource_logs = r.resource_logs.add()
    kv = resource_logs.resource.attributes.add()
    kv.key = "service.name"
    kv.value.string_value = "raw-grpc"
    record = resource_logs.scope_logs.add().log_records.add()
    record.time_unix_nano = 1_700_000_000_000_000_000
    record.severity_text = "INFO"
    record.body.string_value = message
    return r.SerializeToString()


def mixed():
    r = ExportLogsServiceRequest()
    records = r.resource_logs.add().scope_logs.add().log_records
    for i in range(5):
        record = records.add()
        record.body.string_value = f"mixed-{i}"
        if i % 2 == 1:
            record.trace_id = bytes(range(1, 17))
    return r.SerializeToString()


def call(channel, case):
    large = int(os.environ.get("LARGE", "0"))
    path, body, compression = {
        "ok": (EXPORT, request("plain"), None),
        "gzip": (EXPORT, request("zipped"), grpc.Compression.Gzip),
        "mixed": (EXPORT, mixed(), None),
        "garbage": (EXPORT, b"\x0a\xff\xff\xff\xff", None),
        "traces": (TRACES, b"", None),
        "large": (EXPORT, request("x" * large), None),
        "large_gzip": (EXPORT, request("x" * large), grpc.Compression.Gzip),
    }[case]
    token = os.environ.get("OTLP_TOKEN")
    metadata = [("authorization", f"Bearer {token}")] if token else None
    # No serializers: the bytes go out as they are.
    method = channel.unary_unary(path)
    answer = {"case": case, "code": "OK", "details": None, "rejected": None, "message": None,
              "retry_delay": None}
    try:
        reply = method(body, metadata=metadata, compression=compression, timeout=30)
        response = ExportLogsServiceResponse.FromString(reply)
        if response.HasField("partial_success"):
            answer["rejected"] = response.partial_success.rejected_log_records
            answer["message"] = response.partial_success.error_message
    except grpc.RpcError as e:
        answer["code"] = e.code().name
        answer["details"] = e.details()
        retry = dict(e.trailing_metadata() or ()).get("google.rpc.retryinfo-bin")
        if retry is not None:
            answer["retry_delay"] = RetryInfo.FromString(retry).retry_delay.seconds
    return answer


def main():
    target, cases = sys.argv[1], sys.argv[2:]
    ca_file = os.environ.get("OTLP_CA_FILE")
    if ca_file:
        with open(ca_file, "rb") as f:
            channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=f.read()))
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        for case in cases:
            print(json.dumps(call(channel, case)), flush=True)


if __name__ == "__main__":
    main()
