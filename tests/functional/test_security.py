"""Who gets a token (issue 12), through the functions themselves: boot networks,
enrolment secrets required by a profile or deployment, discovery from a boot network
only and capped, and a token that lives for one install. The attacker tests through
the real gateway are in tests/infra/test_security_gateway.py."""

from __future__ import annotations

import time

import requests
from support.helpers import make_node, make_profile, snapshot, token_from_script
from support.server import RunningServer

OUTSIDE = {"REMOTE_ADDR": "203.0.113.7"}
MAC = "52:54:00:00:00:01"


def test_a_registered_node_outside_the_boot_networks_gets_no_token_and_nothing_moves(boot, config, status, admin,
                                                                                      clean_db):
    make_profile(config, admin)
    node = make_node(config, admin, profile="worker")
    script = boot.get(f"/ipxe?mac={MAC}", environ_base=OUTSIDE).get_data(as_text=True)
    assert "token=" not in script and "no boot script for this machine" in script
    assert config.get(f"/api/v1/nodes/{node['id']}", headers=admin).json["stage"] == "registered"
    events = status.get(f"/nodes/{node['id']}/events", headers=admin).json["events"]
    assert any(e["kind"] == "boot-refused" and "203.0.113.7" in e["message"] for e in events)
    # A forwarded-for header from a peer that is no trusted proxy is not believed.
    spoofed = boot.get(f"/ipxe?mac={MAC}", environ_base=OUTSIDE, headers={"X-Forwarded-For": "127.0.0.1"})
    assert "token=" not in spoofed.get_data(as_text=True)
    assert "token=" in boot.get(f"/ipxe?mac={MAC}").get_data(as_text=True)  # from loopback: a boot network


def test_a_profile_or_deployment_can_require_the_secret_outright(boot, config, admin, clean_db):
    make_profile(config, admin, require_secret=True)
    make_node(config, admin, profile="worker")
    assert "token=" not in boot.get(f"/ipxe?mac={MAC}").get_data(as_text=True)
    assert config.patch("/api/v1/profiles/worker", json={"require_secret": False}, headers=admin).status_code == 200
    assert "token=" in boot.get(f"/ipxe?mac={MAC}").get_data(as_text=True)

    deployment = config.post("/api/v1/deployments", json={"name": "rack", "profile": "worker",
                                                           "require_secret": True}, headers=admin)
    assert deployment.status_code == 201, deployment.json
    make_node(config, admin, mac="52:54:00:00:00:02", deployment="rack")
    assert "token=" not in boot.get("/ipxe?mac=52:54:00:00:00:02").get_data(as_text=True)
    bad = config.patch("/api/v1/profiles/worker", json={"require_secret": "yes"}, headers=admin)
    assert bad.status_code == 400 and "require_secret" in bad.json["error"]


def test_discovery_only_from_a_boot_network_and_only_up_to_the_cap(boot, config, admin, clean_db, settings):
    make_profile(config, admin, name="discovery")
    settings(discovery_profile="discovery", discovery_cap=3)
    before = snapshot(clean_db)
    outside = boot.get("/ipxe?mac=52:54:00:77:00:01", environ_base=OUTSIDE).get_data(as_text=True)
    assert "token=" not in outside
    assert snapshot(clean_db)["node"] == before["node"]  # no node for a machine outside

    for i in range(5):
        boot.get(f"/ipxe?mac=52:54:00:77:01:{i:02x}")
    listed = config.get("/api/v1/nodes", headers=admin).json["items"]
    assert len(listed) == 3 and all(n["discovered"] for n in listed)
    # The machines discovery did not take are remembered for an operator to adopt, with why.
    machines = {m["mac"]: m for m in config.get("/api/v1/unknown", headers=admin).json["items"]}
    assert sorted(machines) == ["52:54:00:77:00:01", "52:54:00:77:01:03", "52:54:00:77:01:04"]
    assert "not on a boot network" in machines["52:54:00:77:00:01"]["last_reason"]
    assert machines["52:54:00:77:00:01"]["last_address"] == "203.0.113.7"
    assert "discovery cap reached" in machines["52:54:00:77:01:04"]["last_reason"]
    with clean_db.transaction() as tx:
        unknown = tx.all("SELECT message FROM event WHERE kind = 'unknown-boot' ORDER BY id")
    assert any("52:54:00:77:00:01 tried to boot from 203.0.113.7" in e["message"] for e in unknown)


def test_a_token_stops_at_failed_and_at_the_install_s_time_limit(boot, config, status, admin, clean_db, settings):
    make_profile(config, admin)
    node = make_node(config, admin, profile="worker")
    token = token_from_script(boot.get(f"/ipxe?mac={MAC}").get_data(as_text=True))
    report = f"/nodes/{node['id']}/progress?token={token}"
    assert status.post(report, json={"stage": "failed", "message": "disk"}).status_code == 200
    closed = status.post(report, json={"stage": "ready"})
    assert closed.status_code == 403 and "closed" in closed.json["error"]
    assert config.get(f"/nodes/{node['id']}/user-data?token={token}").status_code == 403

    config.post(f"/api/v1/nodes/{node['id']}/reinstall", headers=admin)
    settings(token_ttl=1)
    token = token_from_script(boot.get(f"/ipxe?mac={MAC}").get_data(as_text=True))
    time.sleep(2.1)
    expired = status.post(f"/nodes/{node['id']}/progress?token={token}", json={"stage": "installing"})
    assert expired.status_code == 403 and "expired" in expired.json["error"]


def test_a_boot_without_proof_never_restarts_an_install(boot, config, status, admin, clean_db):
    make_profile(config, admin)
    node = make_node(config, admin, profile="worker")
    token = token_from_script(boot.get(f"/ipxe?mac={MAC}").get_data(as_text=True))
    assert status.post(f"/nodes/{node['id']}/progress?token={token}", json={"stage": "installing"}).status_code == 200
    boot.get(f"/ipxe?mac={MAC}", environ_base=OUTSIDE)
    assert config.get(f"/api/v1/nodes/{node['id']}", headers=admin).json["stage"] == "installing"
    # The machine itself asking again (from its boot network) restarts it, with a new install.
    again = token_from_script(boot.get(f"/ipxe?mac={MAC}").get_data(as_text=True))
    assert config.get(f"/api/v1/nodes/{node['id']}", headers=admin).json["stage"] == "booting"
    old = status.post(f"/nodes/{node['id']}/progress?token={token}", json={"stage": "configuring"})
    assert old.status_code == 403  # the first install's token died with it
    assert status.post(f"/nodes/{node['id']}/progress?token={again}", json={"stage": "configuring"}).status_code == 200


def test_the_router_limits_boot_per_client_and_its_access_log_holds_no_token(tmp_path, clean_db):
    log = tmp_path / "access.log"
    with RunningServer(env={"BOOTFLEET_BOOT_RATE_LIMIT": "3", "BOOTFLEET_ACCESS_LOG": str(log)}) as server:
        admin = {"Authorization": f"Bearer {server.admin_token}"}
        requests.post(server.url + "/config/api/v1/profiles", headers=admin, timeout=10,
                      json={"name": "p", "kernel": "k", "args": "x={{ status_url }}"})
        node = requests.post(server.url + "/config/api/v1/nodes", headers=admin, timeout=10,
                             json={"macs": [MAC], "profile": "p"}).json()
        codes = [requests.get(f"{server.url}/boot/ipxe?mac={MAC}", timeout=10).status_code for _ in range(12)]
        assert codes.count(429) >= 4 and codes[0] == 200, codes
        time.sleep(1.5)
        script = requests.get(f"{server.url}/boot/ipxe?mac={MAC}", timeout=10).text
        token = token_from_script(script)
        requests.get(f"{server.url}/config/nodes/{node['id']}/t/{token}/meta-data", timeout=10)
        requests.get(f"{server.url}/config/nodes/{node['id']}/meta-data?token={token}", timeout=10)
        # The config answers are not rate limited: only /boot/ is.
        assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
    text = log.read_text()
    assert "/t/[redacted]/meta-data" in text and "token=[redacted]" in text
    assert token not in text and server.admin_token not in text
