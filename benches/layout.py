#!/usr/bin/env python3
"""Writes layout/symbol-order.txt: the functions weir runs, for the linker to lay out together.

    python3 benches/layout.py            # builds, profiles (a few minutes), rewrites the file
    python3 benches/layout.py --check [BINARY]   # how many of the file's names BINARY has

The order is applied only to release builds made with WEIR_SYMBOL_ORDER=1 (see build.rs).

Why. The kernel maps an executable's pages around every page fault (64 KiB at a time), and
every mapped page counts in the process's resident memory. With the code in the order the
compiler emits it, the 2.5 to 3.5 MB of functions a pipeline runs are spread over the 14 MB
of `.text`, and weir kept 6 to 8 MiB of it resident in benches/compare, more than half of
rsyslog's whole footprint. Laid out together (lld's `--symbol-ordering-file`, passed by
build.rs), the same functions keep 1.7 to 2.6 MiB resident (BENCHMARKS.md, 2026-12-04
(layout)).

How. Every scenario of benches/compare (small inputs) and the default pipeline run under
`valgrind --tool=callgrind`, which records every function executed, however rarely. The
functions that ran in the same pipelines form a group; the groups run by the most pipelines
come first (start-up, the runtime, the common data path), and each pipeline's own code
follows in groups of its own. The names are the linker's (mangled): a name the next build no
longer has (a dependency updated, another compiler) is skipped by the linker, and that
function lands with the code nobody profiled, so a stale file costs memory, never
correctness. Run this again after such changes; `--check` says when it is due (most names
of the file missing from a built binary).
"""

import argparse
import collections
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
OUT = os.path.join(ROOT, "layout", "symbol-order.txt")

HEADER = """\
# Functions of the weir binary in the order the linker lays them out (lld
# --symbol-ordering-file, passed by build.rs with WEIR_SYMBOL_ORDER=1): what weir runs,
# together, so that fewer pages of the executable are resident. Written by benches/layout.py
# from callgrind profiles of every scenario of benches/compare and of the default pipeline; run
# it again to refresh. Names the build does not have are skipped by the linker.
# written by: {rustc}
"""

WRAPPER = """#!/bin/sh
# Runs weir under callgrind for `weir run`; anything else (validate) directly.
if [ "$1" != run ]; then exec "{weir}" "$@"; fi
exec valgrind --tool=callgrind --demangle=no --dump-instr=no --compress-strings=no \\
  --callgrind-out-file="{out}/callgrind.%p" "{weir}" "$@" 2>>"{out}/valgrind.log"
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def functions(path, binary):
    """The functions of `binary` that ran in one callgrind profile, with their self cost."""
    name_of = os.path.basename(binary)
    ran = collections.Counter()
    obj = fn = callee_obj = None
    after_calls = False

    def ours(o):
        return o is not None and os.path.basename(o) == name_of

    def norm(name):
        # callgrind marks recursion depth with 'N; the symbol is the same.
        return re.sub(r"'\d+$", "", name.strip())

    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("ob="):
                obj = line[3:].strip()
            elif line.startswith("fn="):
                fn = norm(line[3:]) if ours(obj) else None
                if fn:
                    ran[fn] += 0
            elif line.startswith("cob="):
                callee_obj = line[4:].strip()
            elif line.startswith("cfn="):
                if ours(callee_obj or obj):
                    ran[norm(line[4:])] += 0
                callee_obj = None
            elif line.startswith("calls="):
                after_calls = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                if after_calls:
                    after_calls = False  # the callee's inclusive cost, not this function's
                elif fn:
                    parts = line.split()
                    if len(parts) >= 2 and parts[1].isdigit():
                        ran[fn] += int(parts[1])
    return ran


def rustc_version():
    out = subprocess.run(["rustc", "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def check(binary, order_file):
    """Prints how many names of the order file `binary` defines; false when under half."""
    with open(order_file) as f:
        names = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    out = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True,
                         check=True).stdout
    defined = {line.split()[-1] for line in out.splitlines() if line.split()}
    found = sum(1 for n in names if n in defined)
    share = found / len(names) if names else 0.0
    log("%s: %d of the %d names of %s resolve (%.0f%%)" % (
        binary, found, len(names), os.path.relpath(order_file, ROOT), share * 100))
    if share < 0.5:
        log("warning: most names no longer resolve; run `python3 benches/layout.py` to write "
            "the order again (a stale order costs memory, not correctness)")
    return share >= 0.5


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", nargs="?", const=os.path.join(TARGET, "release", "weir"),
                    metavar="BINARY", help="count the file's names BINARY resolves, and stop")
    ap.add_argument("--size-mib", type=int, default=8, help="input size per scenario")
    ap.add_argument("--default-secs", type=float, default=20,
                    help="seconds the default pipeline runs")
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--keep", action="store_true", help="keep the callgrind profiles")
    args = ap.parse_args()
    if args.check:
        sys.exit(0 if check(args.check, args.out) else 1)
    if not shutil.which("valgrind"):
        sys.exit("valgrind is needed: apt-get install valgrind")

    log("building weir and the benchmark's helpers (release) ...")
    # Two commands: built beside examples, weir would get the dev-dependencies' features
    # (tokio's test-util) and other symbol names than the `cargo build --release` this file
    # is for.
    subprocess.run(["cargo", "build", "--release", "--example", "bench_endpoint",
                    "--example", "bench_split"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "--bin", "weir"], cwd=ROOT, check=True)
    weir = os.path.join(TARGET, "release", "weir")
    work = tempfile.mkdtemp(prefix="weir-layout-")
    wrapper = os.path.join(work, "weir")
    with open(wrapper, "w") as f:
        f.write(WRAPPER.format(weir=weir, out=work))
    os.chmod(wrapper, 0o755)

    log("profiling every scenario of benches/compare (%d MiB inputs) ..." % args.size_mib)
    subprocess.run([sys.executable, os.path.join(HERE, "compare", "run.py"), "--no-build",
                    "--runs", "1", "--shipper", "weir", "--size-mib", str(args.size_mib)],
                   env=dict(os.environ, WEIR_BIN=wrapper), stdout=subprocess.DEVNULL,
                   check=True)

    log("profiling the default pipeline for %.0f s ..." % args.default_secs)
    proc = subprocess.Popen([wrapper, "run"], cwd=work, stdout=subprocess.DEVNULL,
                            env=dict(os.environ, WEIR_API_ADDRESS="127.0.0.1:0",
                                     WEIR_DEMO_INTERVAL_MS="10"))
    time.sleep(args.default_secs)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)

    profiles = sorted(glob.glob(os.path.join(work, "callgrind.*")))
    if len(profiles) < 6:
        sys.exit("expected 6 profiles (5 scenarios, the default pipeline), found %d in %s" % (
            len(profiles), work))
    cost = collections.Counter()
    ran_in = collections.defaultdict(set)
    for i, p in enumerate(profiles):
        ran = functions(p, weir)
        cost.update(ran)
        for name in ran:
            ran_in[name].add(i)
    # Functions that ran in the same pipelines go together, the groups run by the most
    # pipelines first (the group of all: start-up, the runtime, the common data path), then
    # the costlier group; within a group, the costlier function first. A pipeline's code then
    # spans its own groups and the shared ones, not the other pipelines' code too.
    groups = collections.defaultdict(list)
    for name, where in ran_in.items():
        groups[frozenset(where)].append(name)
    group_cost = {g: sum(cost[n] for n in names) for g, names in groups.items()}
    order = []
    for g in sorted(groups, key=lambda g: (-len(g), -group_cost[g], sorted(g))):
        order.extend(sorted(groups[g], key=lambda n: (-cost[n], n)))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(HEADER.format(rustc=rustc_version()))
        f.write("".join(n + "\n" for n in order))
    log("%d functions from %d profiles written to %s" % (
        len(order), len(profiles), os.path.relpath(args.out, ROOT)))
    if args.keep:
        log("profiles kept in %s" % work)
    else:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
