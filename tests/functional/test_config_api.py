"""The operator API (config) on a real PostgreSQL: CRUD, paging, filters, errors."""

import pytest
from support.helpers import PROFILE, make_node, make_profile, snapshot


def test_admin_token_required(config, clean_db):
    assert config.get("/api/v1/profiles").status_code == 401
    resp = config.get("/api/v1/profiles", headers={"Authorization": "Bearer wrong"})
    assert resp.status_code == 403 and "not valid" in resp.json["error"]


def test_profile_crud(config, admin):
    created = make_profile(config, admin)
    assert created["name"] == "worker" and created["initrds"] == ["initrd.img"]
    assert config.get("/api/v1/profiles/worker", headers=admin).json["id"] == created["id"]
    assert config.get(f"/api/v1/profiles/{created['id']}", headers=admin).json["name"] == "worker"
    updated = config.patch("/api/v1/profiles/worker", json={"args": "quiet"}, headers=admin)
    assert updated.status_code == 200 and updated.json["args"] == "quiet" and updated.json["kernel"] == "vmlinuz"
    listing = config.get("/api/v1/profiles", headers=admin).json
    assert listing["total"] == 1 and listing["items"][0]["args"] == "quiet"
    assert config.delete("/api/v1/profiles/worker", headers=admin).status_code == 204
    assert config.get("/api/v1/profiles/worker", headers=admin).status_code == 404


def test_profile_in_use_cannot_be_deleted(config, admin, clean_db):
    make_profile(config, admin)
    make_node(config, admin, profile="worker")
    before = snapshot(clean_db)
    resp = config.delete("/api/v1/profiles/worker", headers=admin)
    assert resp.status_code == 409 and "used by" in resp.json["error"]
    assert snapshot(clean_db) == before


def test_duplicate_names_and_macs_conflict(config, admin, clean_db):
    make_profile(config, admin)
    make_node(config, admin, mac="52:54:00:00:00:01")
    before = snapshot(clean_db)
    resp = config.post("/api/v1/profiles", json=PROFILE, headers=admin)
    assert resp.status_code == 409 and "already exists" in resp.json["error"]
    resp = config.post("/api/v1/nodes", json={"macs": ["52-54-00-00-00-01"]}, headers=admin)
    assert resp.status_code == 409 and "52:54:00:00:00:01 already belongs" in resp.json["error"]
    assert snapshot(clean_db) == before


def test_deployment_lifecycle(config, admin):
    make_profile(config, admin)
    resp = config.post("/api/v1/deployments", json={"name": "rack1", "profile": "worker", "count": 3,
                                                     "dns_zone": "fleet.example.com"}, headers=admin)
    assert resp.status_code == 201, resp.json
    dep = resp.json
    assert dep["count"] == 3 and dep["state"] == "active"
    node = make_node(config, admin, deployment="rack1")
    assert node["deployment_id"] == dep["id"]
    assert config.patch("/api/v1/deployments/rack1", json={"count": 5}, headers=admin).json["count"] == 5
    resp = config.delete("/api/v1/deployments/rack1", headers=admin)
    assert resp.status_code == 202 and resp.json["state"] == "deleting"
    assert config.get(f"/api/v1/nodes/{node['id']}", headers=admin).json["stage"] == "deprovisioning"
    resp = config.patch("/api/v1/deployments/rack1", json={"count": 1}, headers=admin)
    assert resp.status_code == 409 and "deleting" in resp.json["error"]


def test_node_paging_and_filters(config, admin):
    make_profile(config, admin)
    config.post("/api/v1/deployments", json={"name": "d1", "profile": "worker"}, headers=admin)
    for i in range(7):
        make_node(config, admin, mac=f"52:54:00:00:01:{i:02x}", labels={"rack": "a" if i < 4 else "b"},
                  deployment="d1" if i % 2 else None, hostname=f"n{i}")
    page1 = config.get("/api/v1/nodes?limit=3", headers=admin).json
    page3 = config.get("/api/v1/nodes?limit=3&offset=6", headers=admin).json
    assert page1["total"] == 7 and len(page1["items"]) == 3 and len(page3["items"]) == 1
    assert config.get("/api/v1/nodes?label=rack=b", headers=admin).json["total"] == 3
    assert config.get("/api/v1/nodes?deployment=d1", headers=admin).json["total"] == 3
    assert config.get("/api/v1/nodes?mac=525400000102", headers=admin).json["items"][0]["hostname"] == "n2"
    assert config.get("/api/v1/nodes?hostname=n5", headers=admin).json["total"] == 1
    assert config.get("/api/v1/nodes?stage=registered", headers=admin).json["total"] == 7


def test_node_update_and_delete(config, admin, clean_db):
    node = make_node(config, admin)
    resp = config.patch(f"/api/v1/nodes/{node['id']}", json={"macs": ["52:54:00:00:00:02", "52:54:00:00:00:03"],
                                                            "ip": "10.0.0.5", "hostname": "db1"}, headers=admin)
    assert resp.status_code == 200, resp.json
    assert resp.json["macs"] == ["52:54:00:00:00:02", "52:54:00:00:00:03"] and resp.json["ip"] == "10.0.0.5"
    assert config.delete(f"/api/v1/nodes/{node['id']}", headers=admin).status_code == 204
    assert config.get(f"/api/v1/nodes/{node['id']}", headers=admin).status_code == 404
    # The MAC is free again.
    make_node(config, admin, mac="52:54:00:00:00:02")


def test_node_with_a_server_is_deprovisioned_not_dropped(config, admin):
    node = make_node(config, admin, instance_id="0717-abc")
    resp = config.delete(f"/api/v1/nodes/{node['id']}", headers=admin)
    assert resp.status_code == 202 and resp.json["stage"] == "deprovisioning"


BAD_BODIES = [
    ("/api/v1/profiles", {**PROFILE, "name": "Bad Name"}, "name"),
    ("/api/v1/profiles", {**PROFILE, "args": "console=ttyS0\nshell"}, "args"),
    ("/api/v1/profiles", {**PROFILE, "args": "x=${net0/mac}"}, "args"),
    ("/api/v1/profiles", {**PROFILE, "kernel": ""}, "kernel"),
    ("/api/v1/profiles", {**PROFILE, "config_format": "yaml"}, "config_format"),
    ("/api/v1/profiles", {**PROFILE, "config_template": "{% if %}"}, "config_template"),
    ("/api/v1/profiles", {**PROFILE, "unknown_field": 1}, "unknown_field"),
    ("/api/v1/profiles", {**PROFILE, "selectors": {"role": "a\nb"}}, "selectors"),
    ("/api/v1/nodes", {"macs": ["52:54:00:zz:00:01"]}, "macs.0"),
    ("/api/v1/nodes", {"macs": ["52:54:00:00:00:09"], "hostname": "bad\nname"}, "hostname"),
    ("/api/v1/nodes", {"macs": ["52:54:00:00:00:09"], "hostname": "${x}"}, "hostname"),
    ("/api/v1/nodes", {"macs": ["52:54:00:00:00:09"], "labels": {"rack": "a\nb"}}, "labels"),
    ("/api/v1/nodes", {"macs": ["52:54:00:00:00:09"], "labels": {"rack": "${evil}"}}, "labels"),
    ("/api/v1/nodes", {"macs": ["52:54:00:00:00:09"], "ip": "10.0.0.300"}, "ip"),
    ("/api/v1/nodes", {"macs": []}, "macs"),
    ("/api/v1/nodes", {"macs": ["52:54:00:00:00:09"], "profile": "nope"}, "profile 'nope' not found"),
    ("/api/v1/deployments", {"name": "d", "profile": "worker", "count": -1}, "count"),
    ("/api/v1/deployments", {"name": "d", "profile": "missing"}, "profile 'missing' not found"),
    ("/api/v1/deployments", {"name": "d"}, "profile"),
]


@pytest.mark.parametrize("path,body,needle", BAD_BODIES)
def test_bad_bodies_are_clear_4xx_and_change_nothing(config, admin, clean_db, path, body, needle):
    make_profile(config, admin)
    make_node(config, admin)
    before = snapshot(clean_db)
    resp = config.post(path, json=body, headers=admin)
    assert 400 <= resp.status_code < 500, resp.json
    assert needle in resp.json["error"], resp.json
    assert snapshot(clean_db) == before


@pytest.mark.parametrize(
    "data,content_type,status,needle",
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"[1,2]", "application/json", 400, "JSON object"),
        (b"", "application/json", 400, "JSON object"),
        (b"\xff\xfe", "application/json", 400, "not valid JSON"),
        (b'{"name": "' + b"x" * 2_000_000 + b'"}', "application/json", 413, "larger than"),
    ],
)
def test_malformed_and_oversized_bodies(config, admin, clean_db, data, content_type, status, needle):
    before = snapshot(clean_db)
    resp = config.post("/api/v1/profiles", data=data, content_type=content_type, headers=admin)
    assert resp.status_code == status and needle in resp.json["error"]
    assert snapshot(clean_db) == before


@pytest.mark.parametrize(
    "method,path",
    [("GET", "/api/v1/nodes/00000000-0000-0000-0000-000000000000"), ("GET", "/api/v1/nodes/not-a-uuid"),
     ("PATCH", "/api/v1/profiles/ghost"), ("DELETE", "/api/v1/deployments/ghost"),
     ("POST", "/api/v1/nodes/00000000-0000-0000-0000-000000000000/reinstall")],
)
def test_unknown_ids_are_404(config, admin, clean_db, method, path):
    before = snapshot(clean_db)
    resp = config.open(path, method=method, json={} if method == "PATCH" else None, headers=admin)
    assert resp.status_code == 404 and "not found" in resp.json["error"]
    assert snapshot(clean_db) == before


@pytest.mark.parametrize("query", ["limit=0", "limit=abc", "offset=-1", "limit=5000"])
def test_bad_paging(config, admin, query):
    resp = config.get(f"/api/v1/nodes?{query}", headers=admin)
    assert resp.status_code == 400 and ("limit" in resp.json["error"] or "offset" in resp.json["error"])


def test_wrong_method_is_405(config, admin):
    resp = config.put("/api/v1/nodes", json={}, headers=admin)
    assert resp.status_code == 405 and "allowed" in resp.json["error"]


@pytest.mark.parametrize(
    "method,path,body",
    [("GET", "/api/v1/profiles/a%00b", None), ("GET", "/api/v1/nodes?hostname=a%00", None),
     ("POST", "/api/v1/profiles", {**PROFILE, "name": "a\u0000b"}),
     ("POST", "/api/v1/nodes", {"macs": ["52:54:00:00:00:09"], "labels": {"rack": "\u0000"}})],
)
def test_nul_characters_are_a_400_not_a_database_error(config, admin, clean_db, method, path, body):
    before = snapshot(clean_db)
    resp = config.open(path, method=method, json=body, headers=admin)
    assert resp.status_code == 400 and "NUL" in resp.json["error"]
    assert snapshot(clean_db) == before
