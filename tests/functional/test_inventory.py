"""Issue 22: a node's inventory (POST /status/nodes/<id>/inventory), its `hw.*` labels, and its
profile's requirements: held with every reason, released by a new inventory, a fixed profile or
an operator's override (an event), bad input refused with the database unchanged."""

import pytest
from support.helpers import make_node, make_profile, snapshot, token_from_script

INVENTORY = {
    "cpus": 2, "memory_mib": 1024,
    "disks": [{"name": "vda", "size_bytes": 8 * 2**30, "model": "QEMU HARDDISK", "serial": "disk0",
               "rotational": False, "by_path": "pci-0000:00:04.0"}],
    "nics": [{"name": "eth0", "mac": "52:54:00:00:00:01", "driver": "virtio_net", "speed_mbps": 1000, "link": True}],
    "firmware": {"mode": "uefi", "secure_boot": False},
    "system": {"vendor": "QEMU", "product": "Standard PC (Q35 + ICH9, 2009)", "serial": ""},
}


@pytest.fixture
def booted(boot, config, admin):
    """A node of a profile that needs 2 CPUs and 2 GiB, after its boot answer: (node, token)."""
    make_profile(config, admin, requirements={"min_cpus": 2, "min_memory_mib": 2048, "min_disks": 1})
    node = make_node(config, admin, profile="worker", hostname="n1", labels={"rack": "r1"})
    token = token_from_script(boot.get("/ipxe?mac=52:54:00:00:00:01").get_data(as_text=True))
    return node, token


def test_inventory_stored_labelled_and_shown(config, status, admin, boot):
    make_profile(config, admin)
    node = make_node(config, admin, profile="worker", labels={"rack": "r1", "hw.cpus": "99"})
    token = token_from_script(boot.get("/ipxe?mac=52:54:00:00:00:01").get_data(as_text=True))
    resp = status.post(f"/nodes/{node['id']}/inventory?token={token}", json=INVENTORY)
    assert resp.status_code == 200, resp.json
    assert resp.json == {"node": node["id"], "passed": True, "reasons": [], "override": False, "stage": "booting"}
    got = config.get(f"/api/v1/nodes/{node['id']}", headers=admin).json
    assert got["inventory"]["disks"][0]["serial"] == "disk0" and got["inventory_at"]
    assert got["labels"]["rack"] == "r1" and got["labels"]["hw.cpus"] == "2"  # hw.* replaced, own labels kept
    assert got["labels"]["hw.firmware"] == "uefi" and got["labels"]["hw.memory-gib"] == "1"
    listed = config.get("/api/v1/nodes?label=hw.firmware=uefi", headers=admin).json
    assert [n["id"] for n in listed["items"]] == [node["id"]]
    assert status.get(f"/nodes/{node['id']}", headers=admin).json["inventory"]["cpus"] == 2
    kinds = [e["kind"] for e in status.get(f"/nodes/{node['id']}/events", headers=admin).json["events"]]
    assert "inventory" in kinds


def test_hw_labels_select_a_profile(config, status, admin, boot):
    make_profile(config, admin, name="uefi-nodes", selectors={"hw.firmware": "uefi"})
    make_node(config, admin, labels={"hw.firmware": "uefi"})
    script = boot.get("/ipxe?mac=52:54:00:00:00:01").get_data(as_text=True)
    assert "token=" in script  # the profile its hw.* label selects boots it


def test_held_with_every_reason_then_released_by_a_fixed_profile(config, status, admin, booted):
    node, token = booted
    resp = status.post(f"/nodes/{node['id']}/inventory?token={token}", json=INVENTORY)
    assert resp.status_code == 200
    assert resp.json["passed"] is False and resp.json["stage"] == "held"
    assert resp.json["reasons"] == ["memory: 1.0 GiB, at least 2.0 GiB required"]
    got = config.get(f"/api/v1/nodes/{node['id']}", headers=admin).json
    assert got["stage"] == "held" and got["requirements"]["failures"] == resp.json["reasons"]
    # a held node installs nothing: its progress reports are refused
    refused = status.post(f"/nodes/{node['id']}/progress?token={token}", json={"stage": "installing"})
    assert refused.status_code == 409 and "held" in refused.json["error"]
    # the operator fixes the profile: held nodes are checked again
    fixed = config.patch("/api/v1/profiles/worker", json={"requirements": {"min_cpus": 2}}, headers=admin)
    assert fixed.status_code == 200
    got = config.get(f"/api/v1/nodes/{node['id']}", headers=admin).json
    assert got["stage"] == "booting" and got["requirements"]["failures"] == []
    assert status.post(f"/nodes/{node['id']}/progress?token={token}", json={"stage": "installing"}).status_code == 200


def test_every_reason_listed_and_a_new_inventory_rechecks(status, config, admin, boot):
    make_profile(config, admin, requirements={"min_cpus": 8, "min_memory_mib": 4096, "min_disk_bytes": 100 * 2**30,
                                              "firmware": "bios", "secure_boot": True, "min_nic_speed_mbps": 10000})
    node = make_node(config, admin, profile="worker")
    token = token_from_script(boot.get("/ipxe?mac=52:54:00:00:00:01").get_data(as_text=True))
    url = f"/nodes/{node['id']}/inventory?token={token}"
    reasons = status.post(url, json=INVENTORY).json["reasons"]
    assert [r.split(":")[0] for r in reasons] == ["cpus", "memory", "disks", "firmware", "secure boot", "nics"]
    bigger = {**INVENTORY, "cpus": 8, "memory_mib": 8192, "firmware": {"mode": "bios", "secure_boot": True},
              "disks": [{**INVENTORY["disks"][0], "size_bytes": 200 * 2**30}],
              "nics": [{**INVENTORY["nics"][0], "speed_mbps": 25000}]}
    again = status.post(url, json=bigger).json
    assert again == {"node": node["id"], "passed": True, "reasons": [], "override": False, "stage": "booting"}


def test_override_releases_one_node_and_is_an_event(status, config, admin, booted):
    node, token = booted
    status.post(f"/nodes/{node['id']}/inventory?token={token}", json=INVENTORY)
    resp = config.post(f"/api/v1/nodes/{node['id']}/requirements/override", json={"reason": "lab box"}, headers=admin)
    assert resp.status_code == 200, resp.json
    assert resp.json["stage"] == "booting" and resp.json["requirements"]["override"] is True
    assert resp.json["check"]["passed"] is True and resp.json["check"]["reasons"]  # still listed, but overridden
    events = status.get(f"/nodes/{node['id']}/events", headers=admin).json["events"]
    assert any(e["kind"] == "override" and "lab box" in e["message"] for e in events)
    assert status.post(f"/nodes/{node['id']}/inventory?token={token}", json=INVENTORY).json["passed"] is True
    back = config.delete(f"/api/v1/nodes/{node['id']}/requirements/override", headers=admin)
    assert back.status_code == 200 and back.json["stage"] == "held"


@pytest.mark.parametrize("body,message", [
    ({}, "cpus"),
    ({**INVENTORY, "cpus": "two"}, "cpus"),
    ({**INVENTORY, "cpus": True}, "cpus"),
    ({**INVENTORY, "memory_mib": -1}, "memory_mib"),
    ({**INVENTORY, "gpus": 1}, "gpus: unknown field"),
    ({**INVENTORY, "disks": "vda"}, "disks"),
    ({**INVENTORY, "disks": [{"size_bytes": 1, "colour": "red"}]}, "disks[0].colour"),
    ({**INVENTORY, "disks": [{"model": "x"}]}, "disks[0].size_bytes"),
    ({**INVENTORY, "nics": [{"mac": "nope"}]}, "nics[0].mac"),
    ({**INVENTORY, "nics": [{"mac": "52:54:00:00:00:01", "link": "up"}]}, "nics[0].link"),
    ({**INVENTORY, "firmware": {"mode": "coreboot"}}, "firmware.mode"),
    ({**INVENTORY, "system": {"vendor": "\x07bad"}}, "system.vendor"),
    ({**INVENTORY, "system": {"vendor": "x" * 300}}, "system.vendor"),
    ([1, 2], "object"),
])
def test_bad_inventory_is_a_400_naming_the_field(status, booted, clean_db, body, message):
    node, token = booted
    before = snapshot(clean_db)
    resp = status.post(f"/nodes/{node['id']}/inventory?token={token}", json=body)
    assert resp.status_code == 400 and message in resp.json["error"], resp.json
    assert snapshot(clean_db) == before


def test_inventory_needs_the_node_token(status, booted, clean_db):
    node, _ = booted
    before = snapshot(clean_db)
    assert status.post(f"/nodes/{node['id']}/inventory", json=INVENTORY).status_code == 401
    assert status.post(f"/nodes/{node['id']}/inventory?token=garbage", json=INVENTORY).status_code == 403
    assert snapshot(clean_db) == before


@pytest.mark.parametrize("requirements,message", [
    ({"min_gpus": 1}, "unknown requirement"),
    ({"min_cpus": -1}, "min_cpus"),
    ({"min_cpus": "2"}, "min_cpus"),
    ({"firmware": "efi"}, "firmware"),
    ({"secure_boot": "yes"}, "secure_boot"),
    ([], "requirements"),
])
def test_bad_requirements_are_a_400(config, admin, clean_db, requirements, message):
    make_profile(config, admin)
    before = snapshot(clean_db)
    resp = config.patch("/api/v1/profiles/worker", json={"requirements": requirements}, headers=admin)
    assert resp.status_code == 400 and message in resp.json["error"], resp.json
    assert snapshot(clean_db) == before


def test_override_bad_input(config, admin, booted, clean_db):
    node, _ = booted
    before = snapshot(clean_db)
    resp = config.post(f"/api/v1/nodes/{node['id']}/requirements/override", json={"why": 1}, headers=admin)
    assert resp.status_code == 400 and "why" in resp.json["error"]
    resp = config.post(f"/api/v1/nodes/{node['id']}/requirements/override", json={"reason": 5}, headers=admin)
    assert resp.status_code == 400 and "reason" in resp.json["error"]
    assert config.post("/api/v1/nodes/nope/requirements/override", headers=admin).status_code == 404
    assert snapshot(clean_db) == before


def test_a_deployments_requirements_go_over_its_profiles(status, config, admin, boot, clean_db):
    make_profile(config, admin, requirements={"min_cpus": 1, "min_memory_mib": 512})
    resp = config.post("/api/v1/deployments", json={"name": "db", "profile": "worker", "count": 1,
                                                    "requirements": {"min_memory_mib": 4096}}, headers=admin)
    assert resp.status_code == 201 and resp.json["requirements"] == {"min_memory_mib": 4096}
    node = make_node(config, admin, deployment="db", hostname="db-0")
    token = token_from_script(boot.get("/ipxe?mac=52:54:00:00:00:01").get_data(as_text=True))
    held = status.post(f"/nodes/{node['id']}/inventory?token={token}", json=INVENTORY).json
    assert held["stage"] == "held" and held["reasons"] == ["memory: 1.0 GiB, at least 4.0 GiB required"]
    # the deployment's requirement eased: held nodes are checked again, released
    assert config.patch("/api/v1/deployments/db", json={"requirements": {}}, headers=admin).status_code == 200
    assert config.get(f"/api/v1/nodes/{node['id']}", headers=admin).json["stage"] == "booting"
    before = snapshot(clean_db)
    bad = config.patch("/api/v1/deployments/db", json={"requirements": None}, headers=admin)
    assert bad.status_code == 400 and "requirements" in bad.json["error"]
    bad = config.patch("/api/v1/deployments/db", json={"requirements": {"min_gpus": 1}}, headers=admin)
    assert bad.status_code == 400 and "unknown requirement" in bad.json["error"]
    assert snapshot(clean_db) == before
