#!/usr/bin/env python3
"""What the Prometheus metrics cost a node-script request.

A node-script request touches the metrics exactly so: a pool slot taken and given back
(connections in use +1, -1), one stage change (a transition and a time-in-stage
observation), one boot answer, and the request's count and latency. This times those calls,
in the same order, many times over, as gunicorn's workers make them (PROMETHEUS_MULTIPROC_DIR
set: prometheus_client writes every change to the process's file; bootfleet.metrics adds up in
memory and writes once a second) and in a single process, and prints the cost per request in
microseconds; and, for comparison, with every change written at once.

    python bench/metrics_cost.py [--requests 100000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

PROBE = """
import sys, time
from bootfleet import metrics
n = int(sys.argv[1])
row = [{"node_id": "n", "message": "m", "from_stage": "registered", "in_stage_s": 12.5}]

def one_request():
    metrics.pool_taken(False)
    metrics.stages_moved("booting", row)
    metrics.pool_given()
    metrics.boot_answer("install")
    metrics.request_done("boot", "node_script", 200, 0.004)
    if sys.argv[2] == "each":  # every change written at once, as plain prometheus_client calls would
        metrics.flush()

for _ in range(1000):
    one_request()
best = None
for _ in range(5):
    started = time.perf_counter()
    for _ in range(n):
        one_request()
    took = (time.perf_counter() - started) / n
    best = took if best is None else min(best, took)
print(f"{best * 1e6:.1f}")
"""


def measure(requests: int, multiprocess_dir: str | None, flush: str = "buffered") -> float:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    if multiprocess_dir:
        env["PROMETHEUS_MULTIPROC_DIR"] = multiprocess_dir
    out = subprocess.run([sys.executable, "-c", PROBE, str(requests), flush], env=env, capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bootfleet-metrics-") as folder:
        multi = measure(args.requests, folder)
    with tempfile.TemporaryDirectory(prefix="bootfleet-metrics-") as folder:
        multi_each = measure(args.requests, folder, "each")
    single = measure(args.requests, None)
    print(f"metrics per node-script request (best of 5 x {args.requests}):")
    print(f"  gunicorn workers (PROMETHEUS_MULTIPROC_DIR), as bootfleet counts   {multi:6.1f} us")
    print(f"  gunicorn workers, every change written at once                     {multi_each:6.1f} us")
    print(f"  one process, as bootfleet counts                                   {single:6.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
