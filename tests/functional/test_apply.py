"""Declarative apply and export (issue 23, part 4), through the CLI against a running
`bootfleet serve`: --dry-run changes nothing, a second apply changes nothing, --prune removes
what the file no longer names (after asking), export and apply round-trip with no diff, and a
bad file is one line naming what is wrong, with nothing changed."""

from __future__ import annotations

import json

import pytest
import requests
import yaml
from support import ADMIN
from support.helpers import snapshot
from support.server import RunningServer

from functional.test_cli_operator import run

API = "/config/api/v1"
FLEET = """\
# yaml-language-server: $schema=fleet.schema.json
version: 1
profiles:
  - name: worker
    kernel: vmlinuz
    initrds: [initrd.img]
    args: console=ttyS0 cfg={{ config_url }}
    config_format: cloud-init
    config_template: |
      #cloud-config
      hostname: {{ node.hostname }}
    selectors: {role: worker}
  - name: tiny
    kernel: https://images.example.com/vmlinuz
deployments:
  - name: rack1
    profile: worker
    count: 2
    spec: {dns: {names: [api]}}
  - name: rack2
    profile: tiny
nodes:
  - macs: ["52:54:00:AF:00:01"]
    hostname: web-1
    ip: 10.0.0.11
    deployment: rack1
  - macs: [52-54-00-af-00-02, "52:54:00:af:00:12"]
    hostname: web-2
    deployment: rack1
    labels: {rack: r1}
  - macs: ["52:54:00:af:00:03"]
    hostname: lone
    profile: tiny
webhooks:
  - name: hooks
    url: http://127.0.0.1:9/hook
    events: [node.ready, deployment.*]
"""


@pytest.fixture(scope="module")
def srv(database):
    server = RunningServer(env={"BOOTFLEET_CLEANUP_EVERY": "0", "BOOTFLEET_WEBHOOK_EVERY": "0",
                                "BOOTFLEET_WEBHOOK_ALLOW": "127.0.0.1/32"})
    yield server
    server.stop()


def everything(srv):
    got = {}
    for kind in ("profiles", "deployments", "nodes", "webhooks"):
        resp = requests.get(srv.url + f"{API}/{kind}", headers=ADMIN, params={"limit": 1000}, timeout=10)
        got[kind] = resp.json()["items"]
    return got


def test_apply_dry_run_then_apply_then_nothing_then_export_round_trips(srv, clean_db, tmp_path):
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET)
    before = snapshot(clean_db)
    dry = run(srv, "apply", "-f", str(fleet), "--dry-run", cwd=tmp_path).stdout
    assert "+ profile worker" in dry and "+ deployment rack1" in dry and "+ node 52:54:00:af:00:01" in dry
    assert "+ webhook hooks" in dry and "nothing changed" in dry
    assert snapshot(clean_db) == before and everything(srv)["webhooks"] == []

    applied = run(srv, "apply", "-f", str(fleet), cwd=tmp_path)
    assert "applied 8 change(s)" in applied.stdout and "secret (shown this once)" in applied.stderr
    state = everything(srv)
    assert sorted(p["name"] for p in state["profiles"]) == ["tiny", "worker"]
    rack1 = next(d for d in state["deployments"] if d["name"] == "rack1")
    assert rack1["count"] == 2 and rack1["spec"] == {"dns": {"names": ["api"]}}
    web2 = next(n for n in state["nodes"] if n["hostname"] == "web-2")
    assert web2["macs"] == ["52:54:00:af:00:02", "52:54:00:af:00:12"] and web2["labels"] == {"rack": "r1"}
    assert state["webhooks"][0]["events"] == ["node.ready", "deployment.*"]

    settled = snapshot(clean_db)
    assert "no changes" in run(srv, "apply", "-f", str(fleet), cwd=tmp_path).stdout
    assert snapshot(clean_db) == settled

    exported = run(srv, "export", cwd=tmp_path).stdout
    data = yaml.safe_load(exported)
    assert data["version"] == 1 and [p["name"] for p in data["profiles"]] == ["tiny", "worker"]
    assert data["profiles"][1]["config_template"] == "#cloud-config\nhostname: {{ node.hostname }}\n"
    assert "secret" not in exported and "_id" not in exported
    (tmp_path / "exported.yaml").write_text(exported)
    assert "no changes" in run(srv, "apply", "-f", "exported.yaml", "--prune", cwd=tmp_path).stdout
    assert snapshot(clean_db) == settled
    run(srv, "export", "-o", "again.yaml", cwd=tmp_path)
    assert (tmp_path / "again.yaml").read_text() == exported  # export, apply, export: the same file
    schema = json.loads(run(srv, "export", "--schema", cwd=tmp_path).stdout)
    assert schema["$schema"].endswith("2020-12/schema")


def test_changes_and_prune(srv, clean_db, tmp_path):
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET)
    run(srv, "apply", "-f", str(fleet), cwd=tmp_path)
    data = yaml.safe_load(FLEET)
    data["deployments"][0]["count"] = 3
    data["profiles"][1]["kernel"] = "vmlinuz-2"
    data["nodes"] = [n for n in data["nodes"] if n["hostname"] != "lone"]
    data["nodes"][0]["labels"] = {"rack": "r9"}
    data["webhooks"][0]["events"] = ["node.*"]
    fleet.write_text(yaml.safe_dump(data))

    dry = run(srv, "apply", "-f", str(fleet), "--dry-run", cwd=tmp_path).stdout
    assert "~ deployment rack1: count 2 -> 3" in dry and '~ profile tiny: kernel' in dry
    assert "~ node 52:54:00:af:00:01: labels {} -> {\"rack\": \"r9\"}" in dry
    assert "node 52:54:00:af:00:03 is not in the file (--prune removes it)" in dry

    out = run(srv, "apply", "-f", str(fleet), cwd=tmp_path).stdout
    assert "applied 4 change(s)" in out
    assert any(n["hostname"] == "lone" for n in everything(srv)["nodes"])  # no --prune: left alone

    refused = run(srv, "apply", "-f", str(fleet), "--prune", cwd=tmp_path, check=False)
    assert "not confirmed" in refused.stderr and "--yes" in refused.stderr
    assert any(n["hostname"] == "lone" for n in everything(srv)["nodes"])
    pruned = run(srv, "apply", "-f", str(fleet), "--prune", "--yes", cwd=tmp_path).stdout
    assert "- node 52:54:00:af:00:03" in pruned
    assert not any(n["hostname"] == "lone" for n in everything(srv)["nodes"])
    assert "no changes" in run(srv, "apply", "-f", str(fleet), "--prune", cwd=tmp_path).stdout

    # An empty list prunes its kind; a kind left out is left alone.
    fleet.write_text(yaml.safe_dump({"webhooks": []}))
    run(srv, "apply", "-f", str(fleet), "--prune", "--yes", cwd=tmp_path)
    state = everything(srv)
    assert state["webhooks"] == [] and len(state["profiles"]) == 2 and len(state["nodes"]) == 2


@pytest.mark.parametrize("text,words", [
    ("profiles: [{name: w}]", "profiles/0: 'kernel' is a required property"),
    ("profiles: [{name: w, kernel: k, colour: red}]", "Additional properties"),
    ("profiles: {name: w}", "is not of type 'array'"),
    ("nodes: [{hostname: x}]", "nodes/0"),
    ("nodes: [{macs: [nonsense]}]", "MAC"),
    ("deployments: [{name: a, profile: p}, {name: a, profile: p}]", "named twice: a"),
    ("profiles: [{name: w, kernel: [", "not YAML"),
    ("flavour: 1", "Additional properties"),
    ("deployments: [{name: rack1, profile: worker, count: -1}]", "minimum"),
])
def test_a_bad_file_is_one_line_and_changes_nothing(srv, clean_db, tmp_path, text, words):
    (tmp_path / "bad.yaml").write_text(text)
    before = snapshot(clean_db)
    result = run(srv, "apply", "-f", "bad.yaml", cwd=tmp_path, check=False)
    assert words in result.stderr, result.stderr
    assert snapshot(clean_db) == before


def test_what_the_server_refuses_stops_apply_with_the_reason(srv, clean_db, tmp_path):
    (tmp_path / "fleet.yaml").write_text(FLEET)
    run(srv, "apply", "-f", "fleet.yaml", cwd=tmp_path)
    changed = yaml.safe_load(FLEET)
    changed["deployments"][1]["provider"] = "local"
    (tmp_path / "provider.yaml").write_text(yaml.safe_dump(changed))
    settled = snapshot(clean_db)
    result = run(srv, "apply", "-f", "provider.yaml", cwd=tmp_path, check=False)
    assert "provider cannot change" in result.stderr
    # A viewer may export, not apply.
    viewer = requests.post(srv.url + f"{API}/tokens", json={"name": "v", "role": "viewer"}, headers=ADMIN,
                           timeout=10).json()["token"]
    as_viewer = {"BOOTFLEET_ADMIN_TOKEN": viewer}
    assert "rack1" in run(srv, "export", cwd=tmp_path, env=as_viewer).stdout
    changed = yaml.safe_load(FLEET)
    changed["deployments"][0]["count"] = 5
    (tmp_path / "more.yaml").write_text(yaml.safe_dump(changed))
    result = run(srv, "apply", "-f", "more.yaml", cwd=tmp_path, env=as_viewer, check=False)
    assert "403" in result.stderr and "operator role" in result.stderr
    assert snapshot(clean_db) == settled
