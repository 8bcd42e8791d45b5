"""An app that logs through the OpenTelemetry Python SDK's LoggingHandler, as a model server
instrumented with OpenTelemetry does, and exports with the SDK's OTLP exporter.

usage: otlp_app.py PROTOCOL ENDPOINT COUNT [--pause]

PROTOCOL is `http` (OTLP/HTTP protobuf, ENDPOINT the /v1/logs URL) or `grpc` (ENDPOINT
host:port). The app logs COUNT records in a trace context, one warning with extra fields and
one exception, then flushes and prints `flushed A <ok>`. With --pause it then waits for a line on
standard input, logs COUNT more records (`batch B`) and prints `flushed B <ok>`: the test stops
weir before that line and starts it again while the exporter retries.

From the environment: OTLP_TOKEN (sent as `Authorization: Bearer`), OTLP_CA_FILE (TLS, the
server's certificate verified against it), OTLP_GZIP=1 (compressed requests), OTLP_BATCH (the
first batch's name, default A).
"""

import logging
import os
import sys

from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

TRACE_ID = 0x5B8EFFF798038103D269B633813FC60C
SPAN_ID = 0xEEE19B7EC3C1B174


def exporter(protocol, endpoint):
    # A long export timeout: the exporter retries (with backoff, honouring Retry-After) for
    # that long while weir is away.
    token = os.environ.get("OTLP_TOKEN")
    headers = {"authorization": f"Bearer {token}"} if token else None
    ca_file = os.environ.get("OTLP_CA_FILE")
    gzip = os.environ.get("OTLP_GZIP") == "1"
    if protocol == "http":
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        compression = Compression.Gzip if gzip else Compression.NoCompression
        return OTLPLogExporter(
            endpoint=endpoint, timeout=60, headers=headers, certificate_file=ca_file, compression=compression
        )
    import grpc
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

    credentials = None
    if ca_file:
        with open(ca_file, "rb") as f:
            credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    compression = grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression
    return OTLPLogExporter(
        endpoint=endpoint,
        insecure=credentials is None,
        credentials=credentials,
        headers=headers,
        timeout=60,
        compression=compression,
    )


def log_batch(logger, name, count):
    span = NonRecordingSpan(
        SpanContext(TRACE_ID, SPAN_ID, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    )
    with trace.use_span(span):
        for i in range(count):
            logger.info("batch %s request %d done", name, i, extra={"request_id": f"{name}-{i}", "latency_ms": 12.5})
    logger.warning("batch %s slow model", name, extra={"model": "resnet50", "gpu": 1})
    try:
        raise ValueError(f"batch {name} bad input")
    except ValueError:
        logger.exception("batch %s inference failed", name)


def main():
    protocol, endpoint, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    pause = "--pause" in sys.argv[4:]
    # The SDK's and the exporter's own messages (retries) go to standard error, not to OTLP.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    resource = Resource.create(
        {
            "service.name": "churn-model",
            "service.version": "1.4.2",
            "deployment.environment.name": "test",
            "k8s.namespace.name": "ml",
            "k8s.pod.name": "churn-model-0",
            "host.name": "node-7",
        }
    )
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter(protocol, endpoint)))
    logger = logging.getLogger("inference")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))

    first = os.environ.get("OTLP_BATCH", "A")
    log_batch(logger, first, count)
    print("flushed", first, provider.force_flush(90_000), flush=True)
    if pause:
        sys.stdin.readline()
        log_batch(logger, "B", count)
        print("flushed B", provider.force_flush(90_000), flush=True)
    provider.shutdown()


if __name__ == "__main__":
    main()
