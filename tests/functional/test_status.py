"""status and node configs: tokens, forward-only stages, deployment progress."""

import pytest
from support.helpers import make_node, make_profile, snapshot, token_from_script

IGNITION = '{"ignition": {"version": "3.4.0"}, "storage": {"files": [{"path": "/etc/hostname", "contents": {"source": "data:,{{ node.hostname }}"}}]}}'


@pytest.fixture
def booted(boot, config, admin):
    """A registered node that fetched its boot script: (node, token)."""
    make_profile(config, admin)
    config.post("/api/v1/deployments", json={"name": "rack1", "profile": "worker", "count": 2}, headers=admin)
    node = make_node(config, admin, deployment="rack1", hostname="n1", labels={"rack": "r1"})
    token = token_from_script(boot.get("/ipxe?mac=52:54:00:00:00:01").get_data(as_text=True))
    return node, token


def test_user_data_and_meta_data(config, booted):
    node, token = booted
    resp = config.get(f"/nodes/{node['id']}/user-data?token={token}")
    assert resp.status_code == 200
    assert resp.get_data(as_text=True) == "#cloud-config\nhostname: n1\nrack: r1\n"
    assert resp.content_type.startswith("text/cloud-config")
    meta = config.get(f"/nodes/{node['id']}/t/{token}/meta-data")
    assert meta.get_data(as_text=True) == f"instance-id: {node['id']}\nlocal-hostname: n1\n"
    via_path = config.get(f"/nodes/{node['id']}/t/{token}/user-data")
    assert via_path.status_code == 200


def test_ignition_rendered_and_marks_configuring(boot, config, status, admin):
    make_profile(config, admin, name="ign", config_format="ignition", config_template=IGNITION)
    node = make_node(config, admin, profile="ign", hostname="core1")
    token = token_from_script(boot.get("/ipxe?mac=52:54:00:00:00:01").get_data(as_text=True))
    resp = config.get(f"/nodes/{node['id']}/ignition", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200 and resp.content_type == "application/vnd.coreos.ignition+json"
    assert resp.json["storage"]["files"][0]["contents"]["source"] == "data:,core1"
    assert config.get(f"/api/v1/nodes/{node['id']}", headers=admin).json["stage"] == "configuring"
    wrong = config.get(f"/nodes/{node['id']}/user-data?token={token}")
    assert wrong.status_code == 404 and "renders ignition" in wrong.json["error"]


def test_a_config_that_cannot_be_rendered_for_the_node_fails_it_at_once(boot, config, admin, clean_db):
    # Saved: a sample node has every label. This node has no `rack` label: its config cannot render.
    make_profile(config, admin, name="racked")
    node = make_node(config, admin, profile="racked")
    token = token_from_script(boot.get("/ipxe?mac=52:54:00:00:00:01").get_data(as_text=True))
    resp = config.get(f"/nodes/{node['id']}/user-data?token={token}")
    assert resp.status_code == 500 and "rack" in resp.json["error"] and "now failed" in resp.json["error"]
    with clean_db.transaction() as tx:
        assert tx.scalar("SELECT count(*) FROM event WHERE kind = 'error' AND node_id = :id", id=node["id"]) == 1
    shown = config.get(f"/api/v1/nodes/{node['id']}", headers=admin).json
    assert shown["stage"] == "failed"  # at once, not when `booting` times out
    with clean_db.transaction() as tx:
        reason = tx.scalar("SELECT message FROM event WHERE kind = 'stage' AND node_id = :id ORDER BY id DESC"
                           " LIMIT 1", id=node["id"])
    assert reason.startswith("its config cannot be rendered: profile 'racked' config_template:") and "rack" in reason


@pytest.mark.parametrize("token,status_code", [(None, 401), ("garbage", 403), ("9999999999.AAAA", 403)])
def test_node_endpoints_need_the_node_token(config, status, booted, clean_db, token, status_code):
    node, _ = booted
    before = snapshot(clean_db)
    query = f"?token={token}" if token else ""
    assert config.get(f"/nodes/{node['id']}/user-data{query}").status_code == status_code
    resp = status.post(f"/nodes/{node['id']}/progress{query}", json={"stage": "ready"})
    assert resp.status_code == status_code and "token" in resp.json["error"]
    assert snapshot(clean_db) == before


def test_a_token_for_one_node_does_not_open_another(boot, config, status, admin, booted):
    node, token = booted
    other = make_node(config, admin, mac="52:54:00:00:00:02", deployment="rack1")
    assert status.post(f"/nodes/{other['id']}/progress?token={token}", json={"stage": "ready"}).status_code == 403


def test_stages_move_forward_only(status, booted):
    node, token = booted
    url = f"/nodes/{node['id']}/progress?token={token}"
    first = status.post(url, json={"stage": "installing", "message": "partitioning"})
    assert first.status_code == 200 and first.json == {"node": node["id"], "stage": "installing", "changed": True}
    again = status.post(url, json={"stage": "installing"})
    assert again.status_code == 200 and again.json["changed"] is False
    back = status.post(url, json={"stage": "configuring"})
    assert back.status_code == 409 and "earlier stage" in back.json["error"]
    assert status.post(url, json={"stage": "warp"}).status_code == 400
    assert status.post(url, json={"message": "no stage"}).status_code == 400
    assert status.post(url, json={"stage": "ready"}).json["stage"] == "ready"


@pytest.mark.parametrize("body,field", [
    ({"stage": 5}, "stage"),
    ({"stage": ["installing"]}, "stage"),
    ({"stage": "x" * 33}, "stage"),
    ({"stage": "installing", "message": 7}, "message"),
    ({"stage": "installing", "message": "m" * 2001}, "message"),
])
def test_a_malformed_report_is_a_400_naming_the_field(status, booted, clean_db, body, field):
    node, token = booted
    before = snapshot(clean_db)
    resp = status.post(f"/nodes/{node['id']}/progress?token={token}", json=body)
    assert resp.status_code == 400 and resp.json["error"].startswith(f"{field}: ")
    assert snapshot(clean_db) == before


def test_cloud_init_phone_home_form_post(status, booted, admin):
    node, token = booted
    resp = status.post(f"/nodes/{node['id']}/progress?token={token}&stage=ready",
                       data={"hostname": "n1", "instance_id": node["id"], "pub_key_rsa": "ssh-rsa AAA"})
    assert resp.status_code == 200 and resp.json["stage"] == "ready"
    events = status.get(f"/nodes/{node['id']}/events", headers=admin).json["events"]
    assert events[-1]["message"] == f"phone_home: hostname=n1 instance_id={node['id']}"


def test_deployment_progress_counts_percent_failed_and_stuck(boot, config, status, admin, booted, clean_db):
    node, token = booted
    second = make_node(config, admin, mac="52:54:00:00:00:02", deployment="rack1")
    token2 = token_from_script(boot.get("/ipxe?mac=52:54:00:00:00:02").get_data(as_text=True))
    status.post(f"/nodes/{node['id']}/progress?token={token}", json={"stage": "ready"})
    status.post(f"/nodes/{second['id']}/progress?token={token2}", json={"stage": "failed", "message": "disk full"})
    third = make_node(config, admin, mac="52:54:00:00:00:03", deployment="rack1")
    boot.get("/ipxe?mac=52:54:00:00:00:03")
    with clean_db.transaction() as tx:  # the third node has been booting for an hour
        tx.run("UPDATE node SET stage_changed_at = now() - interval '1 hour' WHERE id = :id", id=third["id"])
    resp = status.get("/deployments/rack1", headers=admin)
    assert resp.status_code == 200
    body = resp.json
    assert body["nodes"] == 3 and body["ready"] == 1 and body["percent"] == 33.3 and body["done"] is False
    assert body["counts"]["ready"] == 1 and body["counts"]["failed"] == 1 and body["counts"]["booting"] == 1
    assert [n["id"] for n in body["failed"]] == [second["id"]] and body["failed"][0]["last_message"] == "disk full"
    assert [n["id"] for n in body["stuck"]] == [third["id"]] and body["stuck"][0]["seconds_in_stage"] >= 3600


def test_event_stream_with_since(status, booted, admin):
    node, token = booted
    first = status.get("/events?since=0", headers=admin).json
    assert first["events"] and first["next"] == first["events"][-1]["id"]
    status.post(f"/nodes/{node['id']}/progress?token={token}", json={"stage": "installing"})
    newer = status.get(f"/events?since={first['next']}", headers=admin).json
    assert [e["stage"] for e in newer["events"]] == ["installing"]
    by_time = status.get("/events?since=2000-01-01T00:00:00Z&deployment=rack1", headers=admin).json
    assert all(e["deployment_id"] == node["deployment_id"] for e in by_time["events"])
    assert status.get("/events?since=yesterday", headers=admin).status_code == 400
    assert status.get("/events", headers={}).status_code == 401


def test_unknown_node_and_deployment(status, admin, clean_db):
    assert status.get("/deployments/ghost", headers=admin).status_code == 404
    resp = status.post("/nodes/00000000-0000-0000-0000-000000000000/progress?token=x", json={"stage": "ready"})
    assert resp.status_code == 404


def test_every_kind_of_report_marks_the_node_seen(status, booted, database):
    """A report is seen with the change it makes (the move, the image write's progress) or on
    its own (a repeated stage): last_seen moves forward each time, as with a token check."""
    node, token = booted
    url = f"/nodes/{node['id']}/progress?token={token}"

    def seen():
        with database.transaction() as tx:
            return tx.scalar("SELECT last_seen FROM node WHERE id = :id", id=node["id"])

    before = seen()
    for body in ({"stage": "installing"}, {"stage": "installing"}, {"stage": "installing", "bytes": 5, "total": 10},
                 {"stage": "rebooting", "bytes": 10, "total": 10}):
        assert status.post(url, json=body).status_code == 200
        now = seen()
        assert now > before, body
        before = now


def test_fetching_a_config_marks_the_node_seen(config, booted, database):
    node, token = booted

    def seen():
        with database.transaction() as tx:
            return tx.scalar("SELECT last_seen FROM node WHERE id = :id", id=node["id"])

    before = seen()
    for kind in ("user-data", "user-data", "meta-data"):  # the move to configuring, then none
        assert config.get(f"/nodes/{node['id']}/{kind}?token={token}").status_code == 200, kind
        now = seen()
        assert now > before, kind
        before = now
