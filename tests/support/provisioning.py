"""Deployments of servers on the fake cloud (tests/fakes/vpc_api.py, the `cloud` fixture in
tests/functional/conftest.py), made and converged through the config function."""

from __future__ import annotations

import time

PLACEMENT = {"zone": "us-south-1", "vpc": "r006-vpc-1", "subnet": "0717-subnet-1", "profile": "bx2d-metal-96x384"}
BASE = "https://boot.example.com"


def create(config, admin, name="web", count=3, **fields):
    body = {"name": name, "profile": "worker", "provider": "ibm", "placement": dict(PLACEMENT), "count": count,
            **fields}
    resp = config.post("/api/v1/deployments", json=body, headers=admin)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.json


def reconcile(config, admin, name="web"):
    resp = config.post(f"/api/v1/deployments/{name}/reconcile", headers=admin)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.json


def converge(config, admin, name="web", until=lambda r: not r["errors"] and not r["deleting"], timeout=15):
    """Passes until `until` holds. A pass that found another running (`busy`: the follow-up a
    scale-down or delete starts, provision/settle.py) counts for nothing."""
    deadline = time.monotonic() + timeout
    while True:
        report = reconcile(config, admin, name)
        if (not report["busy"] and until(report)) or time.monotonic() > deadline:
            return report
        time.sleep(0.15)


def nodes(database, name="web", live=True):
    with database.transaction() as tx:
        rows = tx.all(
            "SELECT n.*, COALESCE((SELECT array_agg(mac) FROM node_mac m WHERE m.node_id = n.id), '{}') AS macs"
            " FROM node n JOIN deployment d ON d.id = n.deployment_id WHERE d.name = :name ORDER BY n.hostname",
            name=name)
    return [r for r in rows if not live or r["stage"] != "deleted"]
