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

import time
from collections.abc import Callable, Iterable

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

# labels() resolves its label values on every call; the node-script path asks for the same few
# children each time, so they are kept.
_children: dict[tuple, object] = {}


def _child(metric, *labels: str):
    key = (metric._name, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def request_done(function: str, endpoint: str, status: int, seconds: float) -> None:
    _child(REQUESTS, function, endpoint, str(status)).inc()
    _child(REQUEST_SECONDS, function, endpoint).observe(seconds)


def boot_answer(outcome: str) -> None:
    _child(BOOT_ANSWERS, outcome).inc()


def stages_moved(stage: str, moved: Iterable[dict]) -> None:
    """Nodes moved to `stage`: rows with the stage they left (`from_stage`) and the seconds
    they spent there (`in_stage_s`), as db.nodes returns them."""
    for row in moved:
        before = row.get("from_stage") or "none"
        _child(STAGE_CHANGES, before, stage).inc()
        if row.get("in_stage_s") is not None and before != stage:
            _child(STAGE_SECONDS, before).observe(max(0.0, float(row["in_stage_s"])))


def provider_call(provider: str, operation: str, result: str) -> None:
    _child(PROVIDER_CALLS, provider, operation, result).inc()


def dns_call(provider: str, operation: str, result: str, count: int = 1) -> None:
    if count:
        _child(DNS_CALLS, provider, operation, result).inc(count)


def cleanup_run(result: str, dry_run: bool) -> None:
    _child(CLEANUP_RUNS, result, "true" if dry_run else "false").inc()
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
