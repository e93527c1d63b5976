"""Progress: node reports moving stages, and a deployment's picture."""

from __future__ import annotations

from bootfleet import stages
from bootfleet.db import nodes
from bootfleet.db.connection import Transaction
from bootfleet.settings import Settings


def report(tx: Transaction, settings: Settings, node: dict, stage: str, message: str) -> bool:
    """Apply a node's report. True if it moved; raises StageError when refused."""
    moved = stages.check_report(node["stage"], stage)
    if moved:
        nodes.set_stage(tx, node["id"], stage, "node", message or f"node reports {stage}")
        if "ready" in (stage, node["stage"]):  # its DNS records follow now (a failure is an event)
            # Imported here: the DNS code and dnspython stay out of the status function's cold start.
            from bootfleet.dns.reconcile import node_changed

            node_changed(tx, settings, node["id"], "status")
    return moved


def deployment_progress(tx: Transaction, deployment: dict, timeouts: dict[str, int]) -> dict:
    return _progress(tx, deployment["id"], timeouts, {
        "id": deployment["id"], "name": deployment["name"], "state": deployment["state"],
        "count": deployment["desired_count"]})


def standalone_progress(tx: Transaction, timeouts: dict[str, int]) -> dict:
    """The nodes outside every deployment, in the shape of a deployment's progress
    (its `deployment` is null)."""
    return _progress(tx, None, timeouts, None)


def _progress(tx: Transaction, deployment_id: str | None, timeouts: dict[str, int], summary: dict | None) -> dict:
    counts = {s: 0 for s in stages.ALL}
    counts.update(nodes.stage_counts(tx, deployment_id))
    total = sum(n for s, n in counts.items() if s != "deleted")
    ready = counts["ready"]
    failed = nodes.failed(tx, deployment_id)
    stuck = []
    for stage, seconds in timeouts.items():
        stuck += nodes.stuck(tx, deployment_id, stage, seconds)
    return {
        "deployment": summary,
        "nodes": total,
        "counts": counts,
        "ready": ready,
        "percent": round(100.0 * ready / total, 1) if total else 0.0,
        "done": total > 0 and ready == total,
        "failed": failed,
        "stuck": stuck,
    }
