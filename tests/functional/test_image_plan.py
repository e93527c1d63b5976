"""Issue 22: an image profile (`image`: key, SHA-256, raw size, compression, disk rule), the plan
the agent reads with its token, and the write's progress through the progress report."""

import pytest
from support.helpers import make_node, make_profile, snapshot, token_from_script

SHA = "ab" * 32
IMAGE = {"key": "os/disk.raw.xz", "sha256": SHA, "size_bytes": 8 * 2**20}


@pytest.fixture
def agent(boot, config, admin):
    make_profile(config, admin, name="img", image=IMAGE, requirements={"min_memory_mib": 256})
    node = make_node(config, admin, profile="img", hostname="n1")
    token = token_from_script(boot.get("/ipxe?mac=52:54:00:00:00:01").get_data(as_text=True))
    return node, token


def plan_of(status, node, token):
    resp = status.get(f"/nodes/{node['id']}/image-plan?token={token}")
    return resp, dict(line.split("=", 1) for line in resp.get_data(as_text=True).splitlines() if "=" in line)


def test_plan_after_the_inventory_passes(status, config, admin, agent):
    node, token = agent
    inv = {"cpus": 1, "memory_mib": 512, "disks": [{"name": "sda", "size_bytes": 2**30}]}
    assert status.post(f"/nodes/{node['id']}/inventory?token={token}", json=inv).json["passed"] is True
    resp, plan = plan_of(status, node, token)
    assert resp.status_code == 200 and resp.content_type.startswith("text/plain")
    assert plan["url"].endswith("/images/os/disk.raw.xz") and plan["sha256"] == SHA
    assert plan["size_bytes"] == str(8 * 2**20) and plan["compression"] == "xz" and plan["disk_rule"] == "largest"
    assert plan["user_data_url"].endswith(f"/config/nodes/{node['id']}/user-data?token={token}")
    assert plan["status_url"].endswith(f"/status/nodes/{node['id']}/progress?token={token}")
    assert config.get("/api/v1/profiles/img", headers=admin).json["image"]["disk"] == {
        "rule": "largest", "serial": None, "path": None}


def test_no_plan_while_held_or_without_an_image(status, config, admin, agent, boot):
    node, token = agent
    held = status.post(f"/nodes/{node['id']}/inventory?token={token}", json={"cpus": 1, "memory_mib": 128})
    assert held.json["stage"] == "held"
    resp, _ = plan_of(status, node, token)
    assert resp.status_code == 409 and "memory: 128 MiB" in resp.json["error"]
    make_profile(config, admin)
    other = make_node(config, admin, mac="52:54:00:00:00:02", profile="worker")
    token2 = token_from_script(boot.get("/ipxe?mac=52:54:00:00:00:02").get_data(as_text=True))
    resp, _ = plan_of(status, other, token2)
    assert resp.status_code == 404 and "names no image" in resp.json["error"]
    assert status.get(f"/nodes/{node['id']}/image-plan").status_code == 401


def test_write_progress_is_stored_on_repeats_of_installing(status, config, admin, agent):
    node, token = agent
    status.post(f"/nodes/{node['id']}/inventory?token={token}", json={"cpus": 1, "memory_mib": 512})
    url = f"/nodes/{node['id']}/progress?token={token}"
    assert status.post(url, json={"stage": "installing", "bytes": 0, "total": 1000}).json["changed"] is True
    again = status.post(url, json={"stage": "installing", "message": "writing", "bytes": 250, "total": 1000})
    assert again.status_code == 200 and again.json["changed"] is False
    got = config.get(f"/api/v1/nodes/{node['id']}", headers=admin).json["install_progress"]
    assert got["bytes"] == 250 and got["total"] == 1000 and got["percent"] == 25.0 and got["at"]


@pytest.mark.parametrize("body,message", [
    ({"stage": "installing", "bytes": -1}, "bytes"),
    ({"stage": "installing", "bytes": "1"}, "bytes"),
    ({"stage": "installing", "total": 5}, "bytes"),
    ({"stage": "installing", "bytes": 6, "total": 5}, "bytes"),
    ({"stage": "installing", "bytes": True}, "bytes"),
])
def test_bad_progress_bytes_are_a_400(status, agent, clean_db, body, message):
    node, token = agent
    before = snapshot(clean_db)
    resp = status.post(f"/nodes/{node['id']}/progress?token={token}", json=body)
    assert resp.status_code == 400 and message in resp.json["error"], resp.json
    assert snapshot(clean_db) == before


@pytest.mark.parametrize("image,message", [
    ({**IMAGE, "sha256": "xyz"}, "sha256"),
    ({**IMAGE, "size_bytes": 1}, "size_bytes"),
    ({**IMAGE, "compression": "bz2"}, "compression"),
    ({**IMAGE, "disk": {"rule": "serial"}}, "serial"),
    ({**IMAGE, "disk": {"rule": "path", "path": "../etc"}}, "path"),
    ({**IMAGE, "disk": {"rule": "biggest"}}, "rule"),
    ({**IMAGE, "colour": 1}, "colour"),
    ({k: v for k, v in IMAGE.items() if k != "sha256"}, "sha256"),
])
def test_bad_image_profiles_are_a_400(config, admin, clean_db, image, message):
    before = snapshot(clean_db)
    resp = config.post("/api/v1/profiles", json={"name": "bad", "kernel": "k", "image": image}, headers=admin)
    assert resp.status_code == 400 and message in resp.json["error"], resp.json
    assert snapshot(clean_db) == before


def test_image_can_be_removed_from_a_profile(config, admin, agent):
    resp = config.patch("/api/v1/profiles/img", json={"image": None}, headers=admin)
    assert resp.status_code == 200 and resp.json["image"] is None
