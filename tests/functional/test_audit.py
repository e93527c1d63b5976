"""The audit log (issue 23, part 2), against a running `bootfleet serve`: one entry per change
made through the API, with the token's name, the action, its target, old and new values, the
outcome, the client address and the request id; never a secret; read through the API and
`bootfleet audit`; old entries go at cleanup after BOOTFLEET_AUDIT_RETENTION_DAYS."""

from __future__ import annotations

import json

import pytest
import requests
from support import ADMIN
from support.helpers import PROFILE
from support.server import RunningServer

from functional.test_cli_operator import run

API = "/config/api/v1"


@pytest.fixture(scope="module")
def srv(database):
    server = RunningServer(env={"BOOTFLEET_CLEANUP_EVERY": "0", "BOOTFLEET_AUDIT_RETENTION_DAYS": "30"})
    yield server
    server.stop()


def call(srv, method, path, token=None, ok=(200, 201, 202, 204), request_id=None, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else dict(ADMIN)
    if request_id:
        headers["X-Request-Id"] = request_id
    resp = requests.request(method, srv.url + path, headers=headers, timeout=30, **kwargs)
    assert ok is None or resp.status_code in ok, resp.text
    return resp


def entries(srv, **params):
    return call(srv, "GET", f"{API}/audit", params={"limit": 1000, **params}).json()["items"]


def test_one_entry_per_change_with_who_what_old_and_new(srv, clean_db, tmp_path):
    created = call(srv, "POST", f"{API}/tokens", json={"name": "ci", "role": "operator"}).json()
    ci = created["token"]
    call(srv, "POST", f"{API}/profiles", ci, json=PROFILE, request_id="req-profile-1")
    call(srv, "PATCH", f"{API}/profiles/worker", ci, json={"kernel": "vmlinuz-2"})
    call(srv, "POST", f"{API}/deployments", ci, json={"name": "rack1", "profile": "worker", "count": 2})
    call(srv, "PATCH", f"{API}/deployments/rack1", ci, json={"count": 3})
    node = call(srv, "POST", f"{API}/nodes", ci, json={"macs": ["52:54:00:ad:00:01"], "hostname": "n1"}).json()
    call(srv, "PATCH", f"{API}/nodes/{node['id']}", ci, json={"hostname": "n1b", "labels": {"rack": "r1"}})
    call(srv, "POST", f"{API}/nodes/{node['id']}/reinstall", ci)
    call(srv, "POST", f"{API}/nodes/import", ci, json={"nodes": [{"macs": ["52:54:00:ad:00:02"]},
                                                                {"macs": ["52:54:00:ad:00:03"]}]})
    requests.get(srv.url + "/boot/ipxe", params={"mac": "52:54:00:ad:00:09"}, timeout=10)  # an unknown machine
    call(srv, "POST", f"{API}/unknown/52:54:00:ad:00:09/adopt", ci, json={"profile": "worker"})
    call(srv, "DELETE", f"{API}/nodes/{node['id']}", ci)
    call(srv, "DELETE", f"{API}/deployments/rack1", ci)
    reads = [call(srv, "GET", f"{API}/{what}", ci) for what in ("profiles", "nodes", "audit")]  # reads: no entries
    assert all(r.status_code == 200 for r in reads)
    call(srv, "DELETE", f"{API}/tokens/ci")  # the bootstrap admin revokes it

    log = list(reversed(entries(srv)))
    actions = [(e["actor"], e["action"], e["target"], e["outcome"]) for e in log]
    assert actions == [
        ("admin", "token.create", "token/ci", "ok"),
        ("ci", "profile.create", "profile/worker", "ok"),
        ("ci", "profile.update", "profile/worker", "ok"),
        ("ci", "deployment.create", "deployment/rack1", "ok"),
        ("ci", "deployment.scale", "deployment/rack1", "ok"),
        ("ci", "node.create", f"node/{node['id']}", "ok"),
        ("ci", "node.update", f"node/{node['id']}", "ok"),
        ("ci", "node.reinstall", f"node/{node['id']}", "ok"),
        ("ci", "node.import", "node", "ok"),
        ("ci", "unknown.adopt", "unknown/52:54:00:ad:00:09", "ok"),
        ("ci", "node.delete", f"node/{node['id']}", "ok"),
        ("ci", "deployment.delete", "deployment/rack1", "ok"),
        ("admin", "token.revoke", "token/ci", "ok"),
    ]
    by_action = {e["action"]: e for e in log}
    assert by_action["profile.update"]["changes"] == {"kernel": {"old": "vmlinuz", "new": "vmlinuz-2"}}
    assert by_action["deployment.scale"]["changes"] == {"count": {"old": 2, "new": 3}}
    assert by_action["node.update"]["changes"] == {"hostname": {"old": "n1", "new": "n1b"},
                                                   "labels": {"old": {}, "new": {"rack": "r1"}}}
    assert by_action["node.reinstall"]["changes"]["token_version"]["new"] == 2
    assert by_action["deployment.delete"]["changes"] == {"state": {"old": "active", "new": "deleting"}}
    assert by_action["profile.create"]["changes"]["kernel"] == {"old": None, "new": "vmlinuz"}
    assert by_action["profile.create"]["request_id"] == "req-profile-1"
    assert by_action["token.create"]["changes"]["role"] == {"old": None, "new": "operator"}
    assert all(e["client_address"] == "127.0.0.1" and e["status"] < 300 and e["request_id"] for e in log)
    assert ci not in json.dumps(log)  # never a secret
    with clean_db.transaction() as tx:
        assert ci not in json.dumps(tx.all("SELECT * FROM audit_log"), default=str)

    # The CLI: by actor, by target (a target and everything under it), since.
    out = run(srv, "audit", "--actor", "ci", "--target", "deployment", "--since", "1h", cwd=tmp_path).stdout
    assert "deployment.scale" in out and "count: 2 -> 3" in out and "profile.create" not in out
    as_json = json.loads(run(srv, "audit", "--target", "profile/worker", "--json", cwd=tmp_path).stdout)
    assert [e["action"] for e in as_json["items"]] == ["profile.update", "profile.create"]


def test_failed_and_denied_changes_are_recorded_with_their_outcome(srv, clean_db):
    viewer = call(srv, "POST", f"{API}/tokens", json={"name": "wall", "role": "viewer"}).json()["token"]
    call(srv, "POST", f"{API}/profiles", json=PROFILE)
    resp = call(srv, "POST", f"{API}/profiles", json=PROFILE, ok=(409,), request_id="dup-1")
    assert resp.status_code == 409
    call(srv, "DELETE", f"{API}/profiles/worker", viewer, ok=(403,))
    log = entries(srv)
    failed = next(e for e in log if e["request_id"] == "dup-1")
    assert failed["action"] == "profile.create" and failed["status"] == 409 and "already exists" in failed["outcome"]
    denied = next(e for e in log if e["actor"] == "wall")
    assert denied["status"] == 403 and denied["outcome"].startswith("denied") and denied["action"] == "profile.delete"
    assert denied["role"] == "viewer" and denied["path"] == f"{API}/profiles/worker"


def test_the_audit_endpoint_checks_its_parameters_and_roles(srv, clean_db):
    metrics = call(srv, "POST", f"{API}/tokens", json={"name": "prom", "role": "metrics"}).json()["token"]
    viewer = call(srv, "POST", f"{API}/tokens", json={"name": "v", "role": "viewer"}).json()["token"]
    assert call(srv, "GET", f"{API}/audit", viewer).status_code == 200
    assert "viewer role" in call(srv, "GET", f"{API}/audit", metrics, ok=(403,)).json()["error"]
    for bad in ({"since": "yesterday"}, {"limit": "0"}, {"offset": "-1"}):
        assert call(srv, "GET", f"{API}/audit", params=bad, ok=(400,)).status_code == 400


def test_cleanup_removes_entries_past_the_retention(srv, clean_db, tmp_path):
    call(srv, "POST", f"{API}/profiles", json=PROFILE)
    with clean_db.transaction() as tx:
        tx.run("UPDATE audit_log SET at = now() - interval '40 days'")
    call(srv, "PATCH", f"{API}/profiles/worker", json={"kernel": "k2"})
    dry = json.loads(run(srv, "cleanup", "--dry-run", "--json", cwd=tmp_path).stdout)
    assert dry["counts"]["audit_pruned"] == 1 and len(entries(srv)) == 2
    run(srv, "cleanup", cwd=tmp_path)
    assert [e["action"] for e in entries(srv)] == ["profile.update"]
