"""Progress: node reports moving stages, and a deployment's picture."""

from __future__ import annotations

from bootfleet import stages
from bootfleet.db import events, nodes
from bootfleet.db.connection import Transaction
from bootfleet.settings import Settings


def report(tx: Transaction, settings: Settings, node: dict, stage: str, message: str, seen: bool = False) -> bool:
    """Apply a node's report (`seen`: a move sets last_seen too). True if it moved; raises
    StageError when refused."""
    moved = stages.check_report(node["stage"], stage)
    if moved:
        nodes.set_stage(tx, node["id"], stage, "node", message or f"node reports {stage}", seen=seen)
        if "ready" in (stage, node["stage"]):  # its DNS records follow now (a failure is an event)
            # Imported here: the DNS code and dnspython stay out of the status function's cold start.
            from bootfleet.dns.reconcile import node_changed

            node_changed(tx, settings, node["id"], "status")
    return moved


# cloud-init's and curtin's webhook reporter (docs/installers.md). Both post one JSON object per
# event: event_type ("start" or "finish"), name (hierarchical, "cmd-install/stage-partitioning",
# "modules-final"), description, origin ("cloudinit" or "curtin"), timestamp, and on a finish a
# result of SUCCESS, WARN or FAIL (cloud-init's cloudinit/reporting/events.py ReportingEvent and
# FinishReportingEvent; curtin's doc/topics/reporting.rst and curtin/reporter/events.py, whose
# DEFAULT_EVENT_ORIGIN is 'curtin'; subiquity, Ubuntu's autoinstall, reports through curtin's
# reporter: subiquity/server/controllers/reporting.py, with "info", "warning" and "error" events too).
REPORTER_RESULTS = ("SUCCESS", "WARN", "FAIL")


def reporter_stage(current: str, origin: str, event_type: str, name: str, result: str | None) -> str | None:
    """The stage a reporter event means, or None: FAIL -> failed; curtin's (the installer
    writing the disk) -> installing; cloud-init's -> configuring, except its last boot stage
    (modules-final) finishing on a node that is rebooting: the installed system came up -> ready."""
    if result == "FAIL":
        return "failed"
    if event_type not in ("start", "finish"):
        return None
    if origin == "curtin":
        return "installing"
    if origin == "cloudinit":
        if current == "rebooting" and event_type == "finish" and name == "modules-final" and result == "SUCCESS":
            return "ready"
        return "configuring"
    return None


def reporter_event(tx: Transaction, settings: Settings, node: dict, event: dict) -> bool:
    """Keep a reporter event (checked by the status function) as the node's event, and move
    the node when it means a later stage (never back: an event of an earlier phase is kept and
    changes nothing). True if the node moved."""
    origin, name, result = event["origin"] or "reporter", event["name"], event["result"]
    text = f"{origin} {event['event_type']} {name}" + (f": {result}" if result else "")
    if event["description"]:
        text += f" ({event['description']})"
    events.add(tx, "report", text[:2000], "node", node_id=node["id"], deployment_id=node["deployment_id"],
               stage=node["stage"])
    stage = reporter_stage(node["stage"], origin, event["event_type"], name, result)
    if stage is None or stage == node["stage"] or (stage != "failed" and stages.rank(stage) < stages.rank(node["stage"])):
        return False
    message = (f"{origin} reports {name} failed: {event['description'] or 'no description'}" if stage == "failed"
               else f"{origin} {event['event_type']} {name}")
    return report(tx, settings, node, stage, message[:2000])


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
