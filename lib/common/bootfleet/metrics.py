"""Prometheus metrics: what the functions count, and the text a scrape of /metrics gets.

The library counts where things happen (a request answered, a boot answer, a stage change,
a database connection taken, a VPC or DNS call) through the small functions below; each
function's Api serves `GET /<function>/metrics` (admin token, web/metrics.py). Node counts
by stage are not counted in a process at all: they are read from the database at scrape
time (`NodeStages`), so they are right whichever instance is scraped.

Cheap on the request path, and off the cold start: a request only adds to a dict here.
`flush()` hands the sums to prometheus_client, once a second from a thread of the process
and before every scrape it answers; prometheus_client is imported, and the metrics made,
at the first flush. (Under gunicorn each change to a prometheus_client value is a locked
write to the process's file, about ten per node-script request; bench/metrics_cost.py.)

Under gunicorn every worker is its own process: with PROMETHEUS_MULTIPROC_DIR set (by
`bootfleet serve` and the container) prometheus_client keeps each process's values in
files there and a scrape adds them up (`render`); a scrape answered by one worker sees
another's figures at most FLUSH_SECONDS late. The variable must be set, and the directory
exist and be empty, before prometheus_client is first imported (cli/serve.py,
infra/container/entrypoint.sh); gunicorn's child_exit calls `worker_exited`.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from bootfleet.settings import Settings

# The classic text format every Prometheus reads (generate_latest writes it for these names).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FLUSH_SECONDS = 1.0
# Requests take milliseconds; a DNS or provisioning request can take seconds.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# A node spends seconds (registered, booting) to an hour (installing) in a stage.
STAGE_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)

# name -> (kind, help, labels, options): made into prometheus_client metrics at the first flush.
METRICS: dict[str, tuple[str, str, tuple[str, ...], dict]] = {
    "bootfleet_requests_total": (
        "counter", "HTTP requests answered, by function, endpoint (handler) and status",
        ("function", "endpoint", "status"), {}),
    "bootfleet_request_seconds": (
        "histogram", "Time to answer an HTTP request, by function and endpoint",
        ("function", "endpoint"), {"buckets": REQUEST_BUCKETS}),
    "bootfleet_boot_answers_total": (
        "counter", ("Node-script answers by outcome: install, local-disk, unknown, no-profile, failed, deleted,"
                    " database-unavailable, render-error"), ("outcome",), {}),
    "bootfleet_stage_transitions_total": (
        "counter", "Nodes moved from one stage to another", ("from_stage", "stage"), {}),
    "bootfleet_stage_seconds": (
        "histogram", "Time a node spent in a stage, observed when it left it", ("stage",),
        {"buckets": STAGE_BUCKETS}),
    "bootfleet_db_connections_in_use": (
        "gauge", "Pooled database connections in use (all processes; sampled each second)", (),
        {"multiprocess_mode": "livesum"}),
    "bootfleet_db_pool_size": (
        "gauge", "Database connections the pools may open (all processes)", (), {"multiprocess_mode": "livesum"}),
    "bootfleet_db_pool_waits_total": (
        "counter", "Transactions that found every pooled connection in use and had to wait", (), {}),
    "bootfleet_db_connects_total": ("counter", "New database connections, by result", ("result",), {}),
    "bootfleet_provider_calls_total": (
        "counter", "Calls to a VPC provider's API, by operation and result (ok, retry, error)",
        ("provider", "operation", "result"), {}),
    "bootfleet_dns_calls_total": (
        "counter", "Reads and changes at the DNS provider, by operation and result",
        ("provider", "operation", "result"), {}),
    "bootfleet_cleanup_runs_total": (
        "counter", "Cleanup runs, by result (ok, errors, busy, failed)", ("result", "dry_run"), {}),
    "bootfleet_cleanup_last_success_timestamp_seconds": (
        "gauge", "When the last cleanup run (not a dry run) finished without errors, in these processes", (),
        {"multiprocess_mode": "max"}),
}
_BOUNDS = {name: (*spec[3]["buckets"], float("inf")) for name, spec in METRICS.items() if spec[0] == "histogram"}

_lock = threading.Lock()
_adds: dict[tuple, float] = {}  # (name, *labels) -> amount to add (counters, gauges)
_sets: dict[tuple, float] = {}  # (name, *labels) -> value to set (gauges)
_observed: dict[tuple, list] = {}  # (name, *labels) -> [sum, count per bucket] (histograms)
_made: dict[str, Any] = {}  # name -> the prometheus_client metric
_flusher_pid = 0


def _start_flusher() -> None:
    """The flushing thread of this process (a gunicorn worker is forked without it)."""
    global _flusher_pid
    _flusher_pid = os.getpid()

    def loop():
        while True:
            time.sleep(FLUSH_SECONDS)
            flush()

    threading.Thread(target=loop, name="bootfleet-metrics", daemon=True).start()


def _add(key: tuple, amount: float = 1.0) -> None:
    if not _flusher_pid:  # this process's first count (_forked resets it in a child)
        _start_flusher()
    with _lock:
        _adds[key] = _adds.get(key, 0.0) + amount


def _set(key: tuple, value: float) -> None:
    if not _flusher_pid:  # this process's first count (_forked resets it in a child)
        _start_flusher()
    with _lock:
        _sets[key] = value


def _observe(key: tuple, value: float) -> None:
    if not _flusher_pid:  # this process's first count (_forked resets it in a child)
        _start_flusher()
    bounds = _BOUNDS[key[0]]
    bucket = bisect.bisect_left(bounds, value)
    with _lock:
        pending = _observed.get(key)
        if pending is None:
            pending = _observed[key] = [0.0, [0] * len(bounds)]
        pending[0] += value
        pending[1][bucket] += 1


def _metric(key: tuple):
    """The prometheus_client child for (name, *labels), the metric made at first use."""
    name, labels = key[0], key[1:]
    metric = _made.get(name)
    if metric is None:
        import prometheus_client

        kind, help_text, label_names, options = METRICS[name]
        made = {"counter": prometheus_client.Counter, "gauge": prometheus_client.Gauge,
                "histogram": prometheus_client.Histogram}[kind]
        metric = _made[name] = made(name, help_text, label_names, **options)
    return metric.labels(*labels) if labels else metric


_flush_lock = threading.Lock()


def _forked() -> None:
    """A forked child (a gunicorn worker) gets new locks (the parent's flusher may have held one)
    and starts its own flusher at its first count (threads do not survive a fork)."""
    global _lock, _flush_lock, _flusher_pid
    _lock, _flush_lock = threading.Lock(), threading.Lock()
    _flusher_pid = 0


os.register_at_fork(after_in_child=_forked)


def flush() -> None:
    """Hand what was counted since the last flush to prometheus_client."""
    global _adds, _sets, _observed
    with _flush_lock:  # one flush at a time: the metrics are made once
        with _lock:
            adds, sets, observed = _adds, _sets, _observed
            _adds, _sets, _observed = {}, {}, {}
        for key, amount in adds.items():
            if amount:
                _metric(key).inc(amount)
        for key, value in sets.items():
            _metric(key).set(value)
        for key, (total, buckets) in observed.items():  # what Histogram.observe does, n at a time
            child = _metric(key)
            child._sum.inc(total)
            for index, count in enumerate(buckets):
                if count:
                    child._buckets[index].inc(count)


def request_done(function: str, endpoint: str, status: int, seconds: float) -> None:
    _add(("bootfleet_requests_total", function, endpoint, str(status)))
    _observe(("bootfleet_request_seconds", function, endpoint), seconds)


def boot_answer(outcome: str) -> None:
    _add(("bootfleet_boot_answers_total", outcome))


def stages_moved(stage: str, moved: Iterable[dict]) -> None:
    """Nodes moved to `stage`: rows with the stage they left (`from_stage`) and the seconds
    they spent there (`in_stage_s`), as db.nodes returns them."""
    for row in moved:
        before = row.get("from_stage") or "none"
        _add(("bootfleet_stage_transitions_total", before, stage))
        if row.get("in_stage_s") is not None and before != stage:
            _observe(("bootfleet_stage_seconds", before), max(0.0, float(row["in_stage_s"])))


def pool_size(connections: int) -> None:
    _set(("bootfleet_db_pool_size",), connections)


def pool_taken(waited: bool) -> None:
    """A transaction took a pooled connection (`waited`: none was free at first)."""
    _add(("bootfleet_db_connections_in_use",))
    if waited:
        _add(("bootfleet_db_pool_waits_total",))


def pool_given() -> None:
    _add(("bootfleet_db_connections_in_use",), -1)


def db_connect(result: str) -> None:
    _add(("bootfleet_db_connects_total", result))


def provider_call(provider: str, operation: str, result: str) -> None:
    _add(("bootfleet_provider_calls_total", provider, operation, result))


def dns_call(provider: str, operation: str, result: str, count: int = 1) -> None:
    if count:
        _add(("bootfleet_dns_calls_total", provider, operation, result), count)


def cleanup_run(result: str, dry_run: bool) -> None:
    _add(("bootfleet_cleanup_runs_total", result, "true" if dry_run else "false"))
    if result == "ok" and not dry_run:
        _set(("bootfleet_cleanup_last_success_timestamp_seconds",), time.time())


# --- the scrape ----------------------------------------------------------------------------


class NodeStages:
    """Collector: node counts by stage, the oldest node's time in each stage, and nodes past
    their stage's timeout, from the database at scrape time. `fetch()` returns rows
    {stage, nodes, oldest_s, past_timeout}; it raising leaves the node figures out and sets
    bootfleet_database_up to 0."""

    def __init__(self, fetch: Callable[[], list[dict]]):
        self.fetch = fetch

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

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


class _Process:
    """This process's own metrics (no PROMETHEUS_MULTIPROC_DIR: one process, or tests)."""

    def collect(self):
        from prometheus_client import REGISTRY

        yield from REGISTRY.collect()


def render(settings: Settings, extra: Iterable = ()) -> tuple[bytes, str]:
    """The exposition text of a scrape (every process's values under gunicorn) and its content type."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    flush()
    registry = CollectorRegistry()
    if settings.metrics_dir:
        multiprocess.MultiProcessCollector(registry, path=settings.metrics_dir)
    else:
        registry.register(_Process())
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE


def worker_exited(pid: int, settings: Settings) -> None:
    """gunicorn's child_exit: a dead worker's live gauges (connections in use) stop counting."""
    if settings.metrics_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, settings.metrics_dir)
