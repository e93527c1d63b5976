"""Prometheus metrics: what the functions count, and the text a scrape of /metrics gets.

The library counts where things happen (a request answered, a boot answer, a stage change,
a database connection taken, a VPC or DNS call) through the small functions below; each
function's Api serves `GET /<function>/metrics` (admin token, web/metrics.py). Node counts
by stage are not counted in a process at all: they are read from the database at scrape
time (`NodeStages`), so they are right whichever instance is scraped.

Under gunicorn every worker is its own process: with PROMETHEUS_MULTIPROC_DIR set (by
`bootfleet serve` and the container) prometheus_client keeps each process's values in
files there and a scrape adds them up (`render`). The variable must be set, and the
directory exist and be empty, before this module is first imported (cli/serve.py,
infra/container/entrypoint.sh); gunicorn's child_exit calls `worker_exited`.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from bootfleet.settings import Settings

# The classic text format every Prometheus reads (generate_latest writes it for these names).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Requests take milliseconds; a DNS or provisioning request can take seconds.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# A node spends seconds (registered, booting) to an hour (installing) in a stage.
STAGE_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)

REQUESTS = Counter("bootfleet_requests_total", "HTTP requests answered, by function, endpoint (handler) and status",
                   ["function", "endpoint", "status"])
REQUEST_SECONDS = Histogram("bootfleet_request_seconds", "Time to answer an HTTP request, by function and endpoint",
                            ["function", "endpoint"], buckets=REQUEST_BUCKETS)
BOOT_ANSWERS = Counter("bootfleet_boot_answers_total",
                       "Node-script answers by outcome: install, local-disk, unknown, no-profile, failed, deleted,"
                       " database-unavailable, render-error", ["outcome"])
STAGE_CHANGES = Counter("bootfleet_stage_transitions_total", "Nodes moved from one stage to another",
                        ["from_stage", "stage"])
STAGE_SECONDS = Histogram("bootfleet_stage_seconds", "Time a node spent in a stage, observed when it left it",
                          ["stage"], buckets=STAGE_BUCKETS)
DB_IN_USE = Gauge("bootfleet_db_connections_in_use", "Pooled database connections in use (all processes)",
                  multiprocess_mode="livesum")
DB_POOL_SIZE = Gauge("bootfleet_db_pool_size", "Database connections the pools may open (all processes)",
                     multiprocess_mode="livesum")
DB_POOL_WAITS = Counter("bootfleet_db_pool_waits_total",
                        "Transactions that found every pooled connection in use and had to wait")
DB_CONNECTS = Counter("bootfleet_db_connects_total", "New database connections, by result", ["result"])
PROVIDER_CALLS = Counter("bootfleet_provider_calls_total",
                         "Calls to a VPC provider's API, by operation and result (ok, retry, error)",
                         ["provider", "operation", "result"])
DNS_CALLS = Counter("bootfleet_dns_calls_total", "Reads and changes at the DNS provider, by operation and result",
                    ["provider", "operation", "result"])
CLEANUP_RUNS = Counter("bootfleet_cleanup_runs_total", "Cleanup runs, by result (ok, errors, busy, failed)",
                       ["result", "dry_run"])
CLEANUP_LAST_OK = Gauge("bootfleet_cleanup_last_success_timestamp_seconds",
                        "When the last cleanup run (not a dry run) finished without errors, in this deployment's"
                        " processes", multiprocess_mode="max")

# --- counting: cheap on the request path ---------------------------------------------------
#
# Under gunicorn every change to a prometheus_client value is a locked write to this process's
# file; a node-script request makes about ten. So the request path only adds to a dict here, and
# `flush()` hands the sums to prometheus_client: once a second from a thread of this process,
# and before every scrape this process answers. A scrape answered by another worker sees this
# one's figures at most FLUSH_SECONDS late. (bench/metrics_cost.py measures both ways.)

FLUSH_SECONDS = 1.0
_lock = threading.Lock()
_children: dict[tuple, Any] = {}  # labels() resolves its labels on every call: the children are kept
_adds: dict[Any, float] = {}  # counter or gauge child -> amount to add
_observed: dict[Any, list] = {}  # histogram child -> [sum, count per bucket]
_flusher_pid = 0


def _child(metric, *labels: str):
    key = (metric._name, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels) if labels else metric
    return child


def _start_flusher() -> None:
    """The flushing thread of this process (a gunicorn worker is forked without it)."""
    global _flusher_pid
    _flusher_pid = os.getpid()

    def loop():
        while True:
            time.sleep(FLUSH_SECONDS)
            flush()

    threading.Thread(target=loop, name="bootfleet-metrics", daemon=True).start()


def _add(child, amount: float = 1.0) -> None:
    if _flusher_pid != os.getpid():
        _start_flusher()
    with _lock:
        _adds[child] = _adds.get(child, 0.0) + amount


def _observe(child, value: float) -> None:
    if _flusher_pid != os.getpid():
        _start_flusher()
    bucket = bisect.bisect_left(child._upper_bounds, value)
    with _lock:
        pending = _observed.get(child)
        if pending is None:
            pending = _observed[child] = [0.0, [0] * len(child._upper_bounds)]
        pending[0] += value
        pending[1][bucket] += 1


def flush() -> None:
    """Hand what was counted since the last flush to prometheus_client."""
    global _adds, _observed
    with _lock:
        adds, observed = _adds, _observed
        _adds, _observed = {}, {}
    for child, amount in adds.items():
        if amount:
            child.inc(amount)
    for child, (total, buckets) in observed.items():  # what Histogram.observe does, n at a time
        child._sum.inc(total)
        for index, count in enumerate(buckets):
            if count:
                child._buckets[index].inc(count)


def request_done(function: str, endpoint: str, status: int, seconds: float) -> None:
    _add(_child(REQUESTS, function, endpoint, str(status)))
    _observe(_child(REQUEST_SECONDS, function, endpoint), seconds)


def boot_answer(outcome: str) -> None:
    _add(_child(BOOT_ANSWERS, outcome))


def stages_moved(stage: str, moved: Iterable[dict]) -> None:
    """Nodes moved to `stage`: rows with the stage they left (`from_stage`) and the seconds
    they spent there (`in_stage_s`), as db.nodes returns them."""
    for row in moved:
        before = row.get("from_stage") or "none"
        _add(_child(STAGE_CHANGES, before, stage))
        if row.get("in_stage_s") is not None and before != stage:
            _observe(_child(STAGE_SECONDS, before), max(0.0, float(row["in_stage_s"])))


def pool_taken(waited: bool) -> None:
    """A transaction took a pooled connection (`waited`: none was free at first)."""
    _add(DB_IN_USE)
    if waited:
        _add(DB_POOL_WAITS)


def pool_given() -> None:
    _add(DB_IN_USE, -1)


def db_connect(result: str) -> None:
    _add(_child(DB_CONNECTS, result))


def provider_call(provider: str, operation: str, result: str) -> None:
    _add(_child(PROVIDER_CALLS, provider, operation, result))


def dns_call(provider: str, operation: str, result: str, count: int = 1) -> None:
    if count:
        _add(_child(DNS_CALLS, provider, operation, result), count)


def cleanup_run(result: str, dry_run: bool) -> None:
    _add(_child(CLEANUP_RUNS, result, "true" if dry_run else "false"))
    if result == "ok" and not dry_run:
        CLEANUP_LAST_OK.set(time.time())


# --- the scrape ----------------------------------------------------------------------------


class NodeStages:
    """Collector: node counts by stage, the oldest node's time in each stage, and nodes past
    their stage's timeout, from the database at scrape time. `fetch()` returns rows
    {stage, nodes, oldest_s, past_timeout}; it raising leaves the node figures out and sets
    bootfleet_database_up to 0."""

    def __init__(self, fetch: Callable[[], list[dict]]):
        self.fetch = fetch

    def collect(self):
        up = GaugeMetricFamily("bootfleet_database_up", "1 if the scrape could read the node counts from the database")
        try:
            rows = self.fetch()
        except Exception:  # noqa: BLE001 - a scrape must answer; the gauge says what failed
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        counts = GaugeMetricFamily("bootfleet_nodes", "Nodes by stage (from the database)", labels=["stage"])
        oldest = GaugeMetricFamily("bootfleet_nodes_oldest_stage_seconds",
                                   "Seconds the longest-waiting node has been in its stage", labels=["stage"])
        late = GaugeMetricFamily("bootfleet_nodes_past_timeout",
                                 "Nodes in a stage for longer than its timeout (cleanup fails them)", labels=["stage"])
        for row in rows:
            counts.add_metric([row["stage"]], row["nodes"])
            oldest.add_metric([row["stage"]], row["oldest_s"] or 0)
            late.add_metric([row["stage"]], row["past_timeout"] or 0)
        yield from (counts, oldest, late)


def render(settings: Settings, extra: Iterable = ()) -> tuple[bytes, str]:
    """The exposition text of a scrape (every process's values under gunicorn) and its content type."""
    flush()
    if settings.metrics_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=settings.metrics_dir)
    else:
        registry = CollectorRegistry()
        registry.register(_Default())
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE


class _Default:
    """This process's own metrics (no PROMETHEUS_MULTIPROC_DIR: one process, or tests)."""

    def collect(self):
        yield from REGISTRY.collect()


def worker_exited(pid: int, settings: Settings) -> None:
    """gunicorn's child_exit: a dead worker's live gauges (connections in use) stop counting."""
    if settings.metrics_dir:
        multiprocess.mark_process_dead(pid, settings.metrics_dir)
