"""Inventory reports and requirement checks (issue 22): a node whose inventory fails its
profile's requirements is held (stage `held`, every reason recorded) and installs nothing;
it is released (back to `booting`) when a new inventory or a fixed profile passes, or an
operator overrides its requirements."""

from __future__ import annotations

from bootfleet import inventory, stages
from bootfleet.db import events, nodes
from bootfleet.db import inventory as stored
from bootfleet.db.connection import Transaction


def report(tx: Transaction, node: dict, body: dict) -> dict:
    """A node's inventory (checked already with inventory.check): stored, its `hw.*` labels
    set, its requirements checked. The answer tells the agent whether it may install."""
    if node["inventory"] != body:
        events.add(tx, "inventory", f"inventory reported: {inventory.summary(body)}", "node",
                   node_id=node["id"], deployment_id=node["deployment_id"], stage=node["stage"])
    stored.store(tx, node["id"], body, inventory.merged_labels(node["labels"], body))
    return check(tx, nodes.get(tx, node["id"]), "node")


def check(tx: Transaction, node: dict, source: str) -> dict:
    """Check the node's inventory against its profile's requirements now: hold it, or release it.
    Returns {"passed", "reasons", "override", "stage"}."""
    profile, deployment = nodes.boot_plan(tx, node)
    reasons = inventory.failures(inventory.combined(profile, deployment), node["inventory"])
    passed = not reasons or node["requirements_override"]
    if reasons != node["requirement_failures"]:
        stored.set_failures(tx, node["id"], reasons)
    stage = node["stage"]
    if not passed and stage in stages.INSTALL_OPEN and stage != stages.HELD:
        nodes.set_stage(tx, node["id"], stages.HELD, source,
                        "held: inventory fails the profile's requirements: " + "; ".join(reasons))
        stage = stages.HELD
    elif passed and stage == stages.HELD:
        why = "requirements overridden by an operator" if reasons else "requirements now met"
        nodes.set_stage(tx, node["id"], "booting", source, f"released: {why}")
        stage = "booting"
    return {"passed": passed, "reasons": reasons, "override": node["requirements_override"], "stage": stage}


def recheck_held(tx: Transaction, source: str) -> int:
    """Check every held node again (a profile's or deployment's requirements changed); returns how many
    were released."""
    released = 0
    for node_id in stored.held(tx):
        released += check(tx, nodes.get(tx, node_id, lock=True), source)["passed"]
    return released


def override(tx: Transaction, node_id: str, on: bool, reason: str, source: str) -> dict:
    """An operator overrides one node's requirements (or takes that back); recorded as an event."""
    node = nodes.get(tx, node_id, lock=True)
    stored.set_override(tx, node_id, on)
    what = "requirements overridden" if on else "requirements override removed"
    events.add(tx, "override", f"{what} by an operator" + (f": {reason}" if reason else ""), source,
               node_id=node_id, deployment_id=node["deployment_id"], stage=node["stage"])
    return check(tx, nodes.get(tx, node_id), source)
