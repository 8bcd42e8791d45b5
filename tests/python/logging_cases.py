"""Random logging.Formatter formats and records, formatted by Python's own logging.

Prints one JSON object per line: the format, its style and datefmt, the text Python's
Formatter wrote for a random LogRecord, and the fields weir must read back from it (ECS names,
as `parse_model_log`'s Python formats document them). weir's property test
(`src/transforms/model_logs/python_property.rs`) runs this and compares.

    python3 tests/python/logging_cases.py CASES SEED

A format is random but unambiguous by construction: fields are separated by literal text
that the value before it cannot contain, so that the line determines every field. Times
are written in UTC (TZ=UTC is set before `time` is used).
"""

import decimal
import json
import logging
import math
import os
import random
import re
import sys
import time

os.environ["TZ"] = "UTC"
time.tzset()

LEVELS = [10, 20, 30, 40, 50, 5, 25]
NAMES = ["root", "app", "app.api.routes", "uvicorn.error", "model_server.predict", "__main__", "kserve"]
FUNCS = ["predict", "handle_request", "<module>", "_load_model", "run"]
PATHS = ["/srv/app/main.py", "/usr/lib/python3.11/site-packages/app/models/churn.py", "worker.py", "/opt/ml/handler_v2.py"]
PROCESS_NAMES = ["MainProcess", "SpawnProcess-1", "ForkPoolWorker-3"]
THREAD_NAMES = ["MainThread", "Thread-3 (serve_forever)", "ThreadPoolExecutor-0_1", "asyncio_0"]
WORDS = ["model", "loaded", "request", "handled", "in", "ms", "features", "ok", "batch", "queue", "warm", "cache", "miss", "churn-xgb", "v3"]
EXTRA = ["request_id", "client_ip", "model_version"]
DATEFMTS = [
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%d/%b/%Y:%H:%M:%S",
    "%Y-%m-%dT%H:%M:%S%z",
    "%b %d %H:%M:%S %Y",
    "%d.%m.%Y %H:%M:%S",
    "%Y%m%d %H%M%S",
    "[%Y-%m-%d %H:%M:%S %z]",
]
# Separators after a field: none of them can occur in a field's value (except a message's).
SEPARATORS = [" ", " - ", " | ", " [", "] ", " :: ", "\t", " @ ", " > "]
# After a message that is not last: text a message never holds.
MESSAGE_SEPARATORS = [" | ", " :: ", "\t", " @ ", " >> "]

# Per attribute: the %-style specs Python accepts for it.
PERCENT_SPECS = {
    "asctime": ["s"],
    "created": ["f", ".3f", "d", "s"],
    "msecs": ["d", "03d", "s"],
    "relativeCreated": ["d", ".1f", "f"],
    "levelname": ["s", "-8s", "8s", "-5s"],
    "levelno": ["d", "s", "2d"],
    "name": ["s", "-20s", "12s"],
    "module": ["s", "-10s"],
    "funcName": ["s", "-15s", "20s"],
    "lineno": ["d", "4d", "-5d", "04d", "s"],
    "filename": ["s", "-16s"],
    "pathname": ["s"],
    "process": ["d", "s", "7d"],
    "processName": ["s", "-14s"],
    "thread": ["d", "s"],
    "threadName": ["s", "-12s"],
    "message": ["s"],
}
BRACE_SPECS = {
    "asctime": [""],
    "created": ["", ":.3f", ":f"],
    "msecs": [":03.0f", ":.0f"],
    "relativeCreated": [":.0f", ":.2f"],
    "levelname": ["", ":<8", ":>8", ":^9", ":*<9"],
    "levelno": ["", ":d", ":3d"],
    "name": ["", ":<20"],
    "module": [""],
    "funcName": ["", ":>16"],
    "lineno": ["", ":d", ":04d", ":<5"],
    "filename": [""],
    "pathname": [""],
    "process": ["", ":d"],
    "processName": [""],
    "thread": [""],
    "threadName": ["", ":<18"],
    "message": [""],
}
ATTRS = list(PERCENT_SPECS)


def random_record(rng):
    level = rng.choice(LEVELS)
    path = rng.choice(PATHS)
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, 8))]
    msg = " ".join(words)
    if rng.random() < 0.1:
        msg += "\n  detail: " + " ".join(rng.choice(WORDS) for _ in range(3))
    exc = None
    if rng.random() < 0.15:
        try:
            raise ValueError("feature 'tenure' out of range: %d" % rng.randint(-9, -1))
        except ValueError:
            exc = sys.exc_info()
    rec = logging.LogRecord(rng.choice(NAMES), level, path, rng.randint(1, 4000), msg, None, exc, rng.choice(FUNCS))
    created = rng.uniform(1.6e9, 1.9e9)
    rec.created = created
    rec.msecs = math.floor((created - int(created)) * 1000) + 0.0
    rec.relativeCreated = rng.uniform(0, 1e7)
    rec.process = rng.randint(1, 4_000_000)
    rec.processName = rng.choice(PROCESS_NAMES)
    rec.thread = rng.randint(1, 2**47)
    rec.threadName = rng.choice(THREAD_NAMES)
    rec.request_id = "%08x-%04x" % (rng.getrandbits(32), rng.getrandbits(16))
    rec.client_ip = "10.%d.%d.%d" % (rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254))
    rec.model_version = str(rng.randint(1, 9))
    return rec


def random_format(rng, style):
    count = rng.randint(1, 6)
    attrs = rng.sample([a for a in ATTRS if a != "message"], count - 1 + (rng.random() < 0.3))
    attrs += rng.sample(EXTRA, 1) if rng.random() < 0.2 else []
    msg_at = len(attrs) if rng.random() < 0.7 else rng.randint(0, len(attrs))
    attrs.insert(msg_at, "message")
    parts = []
    if rng.random() < 0.3:
        parts.append(rng.choice(["[", "> ", "app: "]))
    for i, attr in enumerate(attrs):
        if style == "%":
            spec = rng.choice(PERCENT_SPECS.get(attr, ["s"]))
            parts.append("%%(%s)%s" % (attr, spec))
        elif style == "{":
            spec = rng.choice(BRACE_SPECS.get(attr, [""]))
            parts.append("{%s%s}" % (attr, spec))
        else:
            parts.append(rng.choice(["$%s", "${%s}"]) % attr)
        if i + 1 < len(attrs):
            seps = MESSAGE_SEPARATORS if attr == "message" else SEPARATORS
            parts.append(rng.choice(seps))
    if attrs[-1] != "message" and rng.random() < 0.5:
        parts.append(rng.choice([" ]", " .", " <"]))
    return "".join(parts), attrs


def expected(record, formatter, attrs, line):
    """The fields weir must read: ECS names and values as Python's record holds them."""
    out = {}
    ecs = {
        "levelname": "log.level", "name": "log.logger", "funcName": "log.origin.function",
        "lineno": "log.origin.file.line", "filename": "log.origin.file.name",
        "pathname": "log.origin.file.path", "module": "log.origin.module", "process": "process.pid",
        "processName": "process.name", "thread": "process.thread.id",
        "threadName": "process.thread.name", "levelno": "python.levelno",
    }
    for attr in attrs:
        value = getattr(record, attr, None)
        if attr in ecs:
            out[ecs[attr]] = value
        elif attr in EXTRA:
            out[attr] = value
    if "message" in attrs:
        out["message"] = record.getMessage()
    if "levelname" not in attrs and "levelno" in attrs and record.levelno in (10, 20, 30, 40, 50):
        out["log.level"] = logging.getLevelName(record.levelno)
    if record.exc_info:
        out["error.stack_trace"] = formatter.formatException(record.exc_info)
        out["error.type"] = "ValueError"
    return out


def main():
    cases = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    for _ in range(cases):
        style = rng.choice(["%", "%", "{", "$"])
        fmt, attrs = random_format(rng, style)
        datefmt = rng.choice(DATEFMTS) if rng.random() < 0.5 else None
        formatter = logging.Formatter(fmt, datefmt=datefmt, style=style)
        record = random_record(rng)
        line = formatter.format(record)
        want = expected(record, formatter, attrs, line)
        # Single fields are formatted from a copy without the traceback.
        plain = logging.makeLogRecord(record.__dict__)
        plain.exc_info = None
        plain.exc_text = None

        def alone(attr):
            return logging.Formatter(fmt_for(attrs, fmt, style, attr), style=style).format(plain)

        # Times: `created` when written (as printed), else `asctime` (+ `msecs`).
        if "created" in attrs:
            # The text printed for created: format it alone with the same spec.
            printed = alone("created")
            # The microseconds the text says, rounded half up from its decimals.
            micros = (decimal.Decimal(printed) * 1_000_000).to_integral_value(decimal.ROUND_HALF_UP)
            want["@timestamp_micros"] = int(micros)
        elif "asctime" in attrs:
            secs = int(record.created)
            if datefmt is None:
                micros = secs * 1_000_000 + int(record.msecs) * 1000
            elif "msecs" in attrs:
                micros = secs * 1_000_000 + int(round(float(alone("msecs")))) * 1000
            else:
                micros = secs * 1_000_000
            want["@timestamp_micros"] = micros
        for attr, path in [("msecs", "python.msecs"), ("relativeCreated", "python.relative_created_ms")]:
            if attr in attrs:
                # As text: the reader parses it exactly (JSON number parsers may round).
                want[path] = {"float": repr(float(alone(attr)))}
        print(json.dumps({"format": fmt, "style": style, "datefmt": datefmt, "line": line, "expected": want}))


def fmt_for(attrs, fmt, style, attr):
    """`attr`'s field of `fmt` alone, without width or alignment but with its precision and
    conversion: the text Python printed for it, unpadded."""
    if style == "%":
        m = re.search(r"%\(" + attr + r"\)[#0+ -]*\d*(\.\d+)?([a-zA-Z])", fmt)
        return "%(" + attr + ")" + (m.group(1) or "") + m.group(2)
    if style == "{":
        m = re.search(r"\{" + attr + r"(:[^}]*)?\}", fmt)
        tail = re.search(r"(\.\d+)?([a-zA-Z%])?$", m.group(1) or "").group(0)
        return "{" + attr + (":" + tail if tail else "") + "}"
    return "${" + attr + "}"


if __name__ == "__main__":
    main()
