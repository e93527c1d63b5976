"""Deployments become servers: the config API and the provisioner, through the real
ibm-vpc and ibm-platform-services SDKs, against the local fake VPC, tagging and IAM
APIs (tests/fakes/vpc_api.py), on the real database. The `cloud` fixture is in
tests/functional/conftest.py; the helpers that make and converge deployments in
tests/support/provisioning.py (test_cleanup uses them too)."""

from __future__ import annotations

import re
import threading
import time

import pytest
from fakes.vpc_api import API_KEY
from support.helpers import make_profile, snapshot
from support.provisioning import BASE, PLACEMENT, converge, create, nodes, reconcile

from bootfleet.providers.vpc.ibm import IbmProvider


@pytest.fixture
def profile(config, admin):
    return make_profile(config, admin)


def events(database, kind=None):
    with database.transaction() as tx:
        rows = tx.all("SELECT * FROM event ORDER BY id")
    return [r for r in rows if kind in (None, r["kind"])]


def assert_consistent(cloud, database, name="web"):
    """Each live node has exactly one server, with its name; no owned server is unrecorded."""
    servers = [s for s in cloud.servers() if s["name"].startswith(f"{name}-") and s["status"] != "deleting"]
    by_name = {}
    for s in servers:
        assert s["name"] not in by_name, f"two servers named {s['name']}"
        by_name[s["name"]] = s
    recorded = {n["hostname"]: n["instance_id"] for n in nodes(database, name)}
    assert {k: v["id"] for k, v in by_name.items()} == recorded


# --- create, scale, delete --------------------------------------------------------------------


def test_create_provisions_one_bare_metal_server_per_node(cloud, config, admin, profile, clean_db):
    deployment = create(config, admin, count=3)
    assert deployment["provisioning"]["created"] == ["web-0", "web-1", "web-2"]
    assert deployment["provisioning"]["errors"] == []

    servers = {s["name"]: s for s in cloud.servers("bare_metal_server")}
    assert sorted(servers) == ["web-0", "web-1", "web-2"]
    rows = nodes(clean_db)
    assert [(n["hostname"], n["stage"], n["instance_id"]) for n in rows] == [
        (f"web-{i}", "provisioning", servers[f"web-{i}"]["id"]) for i in range(3)]
    assert all(n["ip"] is None for n in rows)  # 0.0.0.0 while pending is not an address

    # What the SDK sent: the pinned version, generation 2, the chainloader as iPXE user data.
    posts = cloud.requests("POST", r"^/v1/bare_metal_servers$")
    assert {(p.query["version"], p.query["generation"]) for p in posts} == {("2026-10-06", "2")}
    record = next(r for r in cloud.records.values() if r.name == "web-0")
    assert record.user_data.startswith("#!ipxe")
    assert f"chain --autofree {BASE}/boot/ipxe?mac=${{netX/mac}}" in record.user_data
    assert record.image == "r006-ipxe-netboot"  # found with list_images(user_data_format=ipxe)
    assert cloud.tags[servers["web-0"]["crn"]] == {"bootfleet", "bootfleet-deployment:web"}

    time.sleep(0.5)  # pending -> running
    report = reconcile(config, admin)
    assert report["errors"] == [] and report["created"] == []
    for node in nodes(clean_db):
        record = next(r for r in cloud.records.values() if r.id == node["instance_id"])
        assert node["ip"] == record.ip
        assert list(node["macs"]) == [record.mac]
        assert node["stage"] == "provisioning"  # boot moves it on when the server asks for its script
    assert_consistent(cloud, clean_db)


def test_the_booted_server_is_found_by_the_mac_bootfleet_recorded(cloud, config, boot, admin, profile, clean_db):
    create(config, admin, count=1)
    time.sleep(0.5)
    reconcile(config, admin)
    record = next(iter(cloud.records.values()))
    # The server's user data carries its enrolment secret; without it, no script (even from
    # a boot network), and nothing changes.
    secret = re.search(r"&secret=([A-Za-z0-9_-]+)", record.user_data).group(1)
    refused = boot.get(f"/ipxe?mac={record.mac}").get_data(as_text=True)
    assert "kernel" not in refused and nodes(clean_db)[0]["stage"] == "provisioning"
    script = boot.get(f"/ipxe?mac={record.mac}&secret={secret}").get_data(as_text=True)
    assert "kernel" in script
    assert nodes(clean_db)[0]["stage"] == "booting"


def test_each_server_gets_its_own_enrolment_secret_stored_only_hashed(cloud, config, admin, profile, clean_db):
    from bootfleet.tokens import hash_secret

    create(config, admin, count=2)
    found = {}
    for record in cloud.records.values():
        found[record.name] = re.search(r"&secret=([A-Za-z0-9_-]{43}) ", record.user_data).group(1)
    assert len(set(found.values())) == 2
    rows = {n["hostname"]: n for n in nodes(clean_db)}
    for name, secret in found.items():
        assert rows[name]["secret_hash"] == hash_secret(secret)
        assert secret not in str(rows[name])  # only its hash is kept
    views = config.get("/api/v1/nodes", headers=admin).json["items"]
    assert all(v["enrolled"] is True and "secret_hash" not in v for v in views)


def test_scale_up_and_down(cloud, config, admin, profile, clean_db):
    create(config, admin, count=2)
    resp = config.patch("/api/v1/deployments/web", json={"count": 4}, headers=admin)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.json["provisioning"]["created"] == ["web-2", "web-3"]
    assert sorted(s["name"] for s in cloud.servers()) == ["web-0", "web-1", "web-2", "web-3"]

    resp = config.patch("/api/v1/deployments/web", json={"count": 1}, headers=admin)
    assert resp.status_code == 200
    assert sorted(resp.json["provisioning"]["deleting"]) == ["web-1", "web-2", "web-3"]
    report = converge(config, admin)
    assert report["errors"] == []
    assert [s["name"] for s in cloud.servers()] == ["web-0"]
    rows = nodes(clean_db, live=False)
    assert sorted((n["hostname"], n["stage"]) for n in rows) == [
        ("web-0", "provisioning"), ("web-1", "deleted"), ("web-2", "deleted"), ("web-3", "deleted")]
    with clean_db.transaction() as tx:  # the MACs of deleted nodes are free again
        assert tx.scalar("SELECT count(*) FROM node_mac") <= 1

    # Scaling up again makes new nodes with the old names, and new servers.
    resp = config.patch("/api/v1/deployments/web", json={"count": 2}, headers=admin)
    assert resp.json["provisioning"]["created"] == ["web-1"]
    assert_consistent(cloud, clean_db)


def test_delete_deprovisions_every_server(cloud, config, admin, profile, clean_db):
    create(config, admin, count=3)
    resp = config.delete("/api/v1/deployments/web", headers=admin)
    assert resp.status_code == 202
    assert resp.json["state"] == "deleting"
    assert sorted(resp.json["provisioning"]["deleting"]) == ["web-0", "web-1", "web-2"]
    assert {s["status"] for s in cloud.servers()} == {"deleting"}

    report = converge(config, admin, until=lambda r: r["state"] == "deleted")
    assert report["state"] == "deleted"
    assert cloud.servers() == []
    assert {n["stage"] for n in nodes(clean_db, live=False)} == {"deleted"}
    assert config.get("/api/v1/deployments/web", headers=admin).json["state"] == "deleted"
    assert len(cloud.requests("DELETE", r"^/v1/bare_metal_servers/")) == 3


def test_virtual_server_instances_from_the_custom_ipxe_image(cloud, config, admin, profile, clean_db, settings):
    settings(vpc_vsi_image="r006-custom-ipxe")
    placement = {**PLACEMENT, "kind": "instance", "profile": "bx2-2x8"}
    deployment = create(config, admin, name="vsi", count=2, placement=placement)
    assert deployment["provisioning"]["created"] == ["vsi-0", "vsi-1"]
    instances = cloud.servers("instance")
    assert sorted(i["name"] for i in instances) == ["vsi-0", "vsi-1"]
    assert {i["image"]["id"] for i in instances} == {"r006-custom-ipxe"}
    assert all(BASE + "/boot/ipxe" in r.user_data for r in cloud.records.values())
    time.sleep(0.5)
    reconcile(config, admin, "vsi")
    assert all(n["ip"] and n["macs"] for n in nodes(clean_db, "vsi"))
    assert_consistent(cloud, clean_db, "vsi")


# --- status, failures --------------------------------------------------------------------------


def test_a_failed_server_fails_its_node_with_the_api_reason(cloud, config, status, admin, profile, clean_db):
    cloud.fail_servers_named("web-1")
    create(config, admin, count=2)
    time.sleep(0.5)
    report = reconcile(config, admin)
    assert report["failed"] == ["web-1"]
    stages = {n["hostname"]: n["stage"] for n in nodes(clean_db)}
    assert stages == {"web-0": "provisioning", "web-1": "failed"}
    progress = status.get("/deployments/web", headers=admin).json
    assert progress["counts"]["failed"] == 1 and progress["counts"]["provisioning"] == 1
    assert "cannot_start_capacity: The server could not be started" in progress["failed"][0]["last_message"]


def test_an_api_refusal_is_an_event_with_the_api_message(cloud, config, admin, profile, clean_db):
    placement = {**PLACEMENT, "profile": "no-such-profile"}
    deployment = create(config, admin, count=1, placement=placement)
    assert deployment["provisioning"]["failed"] == ["web-0"]
    assert "Profile not found: no-such-profile" in deployment["provisioning"]["errors"][0]
    assert [n["stage"] for n in nodes(clean_db)] == ["failed"]
    assert any("Profile not found: no-such-profile" in e["message"] for e in events(clean_db, "error"))
    assert cloud.servers() == []


def test_a_taken_name_wrapped_in_a_bad_field_does_not_fail_the_node(cloud, config, admin, profile, clean_db):
    """terraform-provider-ibm issue 5389: a bare metal create whose name is taken can come
    back as a 400 `bad_field` wrapping `validation_unique_failed`. Like the bare code, it
    is retried by the next pass (the holder may be going away), not a failed node."""
    inner = ('{"errors":[{"code":"validation_unique_failed","message":"Provided Name (web-0) is not unique"}],'
             '"trace":"3cb02240-c238-45e1-abb3-96b1dce63b60"}')
    cloud.inject("POST", r"^/v1/bare_metal_servers$", status=400, code="bad_field",
                 message=f"Handler Error: Status=400, JSON={inner}")
    deployment = create(config, admin, count=1)
    assert deployment["provisioning"]["failed"] == [] and "bad_field" in deployment["provisioning"]["errors"][0]
    assert [n["stage"] for n in nodes(clean_db)] == ["provisioning"]
    converge(config, admin, until=lambda r: all(n["instance_id"] for n in nodes(clean_db)))
    assert [s["name"] for s in cloud.servers()] == ["web-0"]


@pytest.mark.parametrize("placement,words", [
    ({"zone": "us-south-1", "vpc": "r006-vpc-1", "profile": "bx2d-metal-96x384"}, "needs subnet"),
    ({**PLACEMENT, "kind": "mainframe"}, "placement.kind"),
    ({**PLACEMENT, "flavour": "x"}, "unknown key(s) flavour"),
    ({**PLACEMENT, "subnet": "bad id\n"}, "placement.subnet"),
    ({**PLACEMENT, "region": "eu-de"}, "not in region eu-de"),
])
def test_a_bad_placement_is_refused_and_nothing_changes(cloud, config, admin, profile, clean_db, placement, words):
    before = snapshot(clean_db)
    resp = config.post("/api/v1/deployments", json={"name": "web", "profile": "worker", "provider": "ibm",
                                                    "placement": placement, "count": 2}, headers=admin)
    assert resp.status_code == 400
    assert words in resp.json["error"]
    assert snapshot(clean_db) == before
    assert cloud.log == []


def test_a_bad_placement_update_is_refused_and_nothing_changes(cloud, config, admin, profile, clean_db):
    create(config, admin, count=1)
    before = snapshot(clean_db)
    resp = config.patch("/api/v1/deployments/web", json={"placement": {"zone": "us-south-1"}}, headers=admin)
    assert resp.status_code == 400 and "needs vpc, subnet, profile" in resp.json["error"]
    assert snapshot(clean_db) == before


def test_without_credentials_a_deployment_is_refused_not_stuck(cloud, config, admin, profile, clean_db, settings):
    """Before: created (201), then never deletable (`deleting` forever, its name taken)."""
    settings(ibmcloud_api_key=None)
    before = snapshot(clean_db)
    for count in (0, 1):
        resp = config.post("/api/v1/deployments", json={"name": "web", "profile": "worker", "provider": "ibm",
                                                        "placement": PLACEMENT, "count": count}, headers=admin)
        assert resp.status_code == 400, resp.json
        assert "provider: the ibm provider cannot act here" in resp.json["error"]
        assert "BOOTFLEET_IBMCLOUD_API_KEY" in resp.json["error"]
    assert snapshot(clean_db) == before and cloud.log == []


def test_scaling_is_refused_when_the_provider_cannot_act(cloud, config, admin, profile, clean_db, settings):
    create(config, admin, count=1)
    converge(config, admin)
    settings(ibmcloud_api_key=None)
    before = snapshot(clean_db)
    resp = config.patch("/api/v1/deployments/web", json={"count": 3}, headers=admin)
    assert resp.status_code == 400 and "BOOTFLEET_IBMCLOUD_API_KEY" in resp.json["error"]
    assert snapshot(clean_db) == before


def test_a_forced_delete_records_the_servers_left_behind(cloud, config, admin, profile, clean_db, settings):
    """The provider cannot delete (its key was taken away): ?force=true deletes the deployment now,
    frees its nodes' MACs and its name, and names the servers that may be left behind."""
    create(config, admin, count=2)
    converge(config, admin)
    instances = sorted(n["instance_id"] for n in nodes(clean_db))
    settings(ibmcloud_api_key=None)
    stuck = config.delete("/api/v1/deployments/web", headers=admin)
    assert stuck.status_code == 202 and "BOOTFLEET_IBMCLOUD_API_KEY" in stuck.json["provisioning"]["errors"][0]
    assert config.delete("/api/v1/deployments/web?force=maybe", headers=admin).status_code == 400
    resp = config.delete("/api/v1/deployments/web?force=true", headers=admin)
    assert resp.status_code == 200 and resp.json["state"] == "deleted"
    assert sorted(s["instance_id"] for s in resp.json["left_behind"]) == instances
    message = [e["message"] for e in events(clean_db, "deployment")][-1]
    assert message.startswith("deployment deleted by force; servers that may be left behind at provider ibm: ")
    assert all(i in message for i in instances)
    assert {n["stage"] for n in nodes(clean_db, live=False)} == {"deleted"}
    with clean_db.transaction() as tx:
        assert tx.scalar("SELECT count(*) FROM node_mac") == 0
    # Its name can be used again; the new deployment is what the name finds now.
    settings(ibmcloud_api_key=API_KEY)
    again = create(config, admin, count=0)
    assert again["id"] != resp.json["id"] and again["state"] == "active"
    assert config.get("/api/v1/deployments/web", headers=admin).json["id"] == again["id"]


def test_a_wrong_api_key_is_reported_with_iam_words(cloud, config, admin, profile, clean_db, settings):
    settings(ibmcloud_api_key="wrong-key")
    deployment = create(config, admin, count=1)
    assert "Provided API key could not be found" in deployment["provisioning"]["errors"][0]
    assert cloud.servers() == []


# --- faults: nothing duplicated, nothing lost ---------------------------------------------------------


def test_throttling_and_server_errors_are_retried(cloud, config, admin, profile, clean_db):
    cloud.inject("POST", r"^/v1/bare_metal_servers$", status=429, retry_after=1, times=1)
    cloud.inject("GET", r"^/v1/bare_metal_servers$", status=503, times=2)
    cloud.inject("POST", r"^/v3/tags/attach$", status=500, times=1)
    started = time.monotonic()
    deployment = create(config, admin, count=2)
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was honoured
    assert deployment["provisioning"]["errors"] == []
    assert sorted(s["name"] for s in cloud.servers()) == ["web-0", "web-1"]
    assert all(f.hits == f.times for f in cloud.faults)
    assert_consistent(cloud, clean_db)


def test_a_create_whose_answer_is_lost_is_not_repeated(cloud, config, admin, profile, clean_db):
    # The first create takes effect but answers too late (client timeout 1 s), the
    # second takes effect and answers 500: both servers exist once, found by name.
    cloud.inject("POST", r"^/v1/bare_metal_servers$", timeout=1.5, apply=True, times=1)
    cloud.inject("POST", r"^/v1/bare_metal_servers$", status=500, apply=True, times=1)
    deployment = create(config, admin, count=2)
    assert deployment["provisioning"]["errors"] == []
    assert sorted(s["name"] for s in cloud.servers()) == ["web-0", "web-1"]
    assert len(cloud.requests("POST", r"^/v1/bare_metal_servers$")) == 2
    assert_consistent(cloud, clean_db)
    assert all(cloud.tags[s["crn"]] >= {"bootfleet-deployment:web"} for s in cloud.servers())


def test_a_failure_that_outlasts_the_retries_loses_nothing(cloud, config, admin, profile, clean_db):
    # web-0 is created; then the API fails every call for a while: web-1 is an event
    # and stays provisioning; the next pass finishes it without touching web-0.
    cloud.inject("POST", r"^/v3/tags/attach$", status=500, times=10, apply=True)
    deployment = create(config, admin, count=2)
    errors = deployment["provisioning"]["errors"]
    assert errors and "An internal error occurred" in errors[0]
    rows = nodes(clean_db)
    assert all(n["instance_id"] for n in rows)  # recorded before tagging
    assert {n["stage"] for n in rows} == {"provisioning"}

    report = converge(config, admin)
    assert report["errors"] == []
    assert_consistent(cloud, clean_db)
    assert len(cloud.requests("POST", r"^/v1/bare_metal_servers$")) == 2


def test_an_untagged_server_from_a_lost_create_is_adopted(cloud, config, admin, profile, clean_db):
    # The create and every retry time out (each one landing); the pass ends with an
    # event. The next pass finds web-0 by name, made after its node: adopted, tagged.
    cloud.inject("GET", r"^/v1/bare_metal_servers$", status=500, times=100, skip=1)  # the first lookup works
    cloud.inject("POST", r"^/v1/bare_metal_servers$", timeout=1.2, apply=True, times=1)
    deployment = create(config, admin, count=1)
    assert deployment["provisioning"]["errors"]
    assert nodes(clean_db)[0]["instance_id"] is None
    cloud.faults.clear()
    report = reconcile(config, admin)
    assert report["adopted"] == ["web-0"] and report["errors"] == [], report
    assert_consistent(cloud, clean_db)
    assert "bootfleet-deployment:web" in cloud.tags[cloud.servers()[0]["crn"]]


def test_concurrent_passes_make_no_duplicates(cloud, config, admin, profile, clean_db):
    from bootfleet.provision import provisioner

    create(config, admin, count=0)
    config.patch("/api/v1/deployments/web", json={"count": 0}, headers=admin)
    with clean_db.transaction() as tx:
        tx.run("UPDATE deployment SET desired_count = 4 WHERE name = 'web'")
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(provisioner.reconcile("web", BASE))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(r["created"]) for r in reports) == 4
    assert sorted(s["name"] for s in cloud.servers()) == ["web-0", "web-1", "web-2", "web-3"]
    assert_consistent(cloud, clean_db)


# --- ownership ---------------------------------------------------------------------------------------


def test_foreign_servers_are_never_touched(cloud, config, admin, profile, clean_db):
    squatter = cloud.add_foreign_server("web-1")  # same name as a node, made long before it
    lookalike = cloud.add_foreign_server("web-7", tags=("team:other",))  # deployment-like name, not ours
    stranger = cloud.add_foreign_server("db-0", kind="instance")
    deployment = create(config, admin, count=2)
    assert deployment["provisioning"]["created"] == ["web-0"]
    assert any("bootfleet does not own it" in e for e in deployment["provisioning"]["errors"])
    assert {n["hostname"]: n["instance_id"] for n in nodes(clean_db)}["web-1"] is None

    config.delete("/api/v1/deployments/web", headers=admin)
    report = converge(config, admin, until=lambda r: r["state"] == "deleted")
    assert report["state"] == "deleted"
    left = {s["id"] for s in cloud.servers()}
    assert left == {squatter, lookalike, stranger}
    touched = [r for r in cloud.log if r.method != "GET" and any(i in r.path for i in left)]
    assert touched == []
    assert cloud.tags.get(next(s["crn"] for s in cloud.servers() if s["id"] == squatter), set()) == set()


def test_an_owned_server_no_node_records_is_removed(cloud, config, admin, profile, clean_db):
    create(config, admin, count=2)
    # Lose the record of web-1 (as if its create answer was lost and the node went away).
    with clean_db.transaction() as tx:
        tx.run("UPDATE node SET instance_id = NULL, stage = 'deleted' WHERE hostname = 'web-1'")
        tx.run("UPDATE deployment SET desired_count = 1 WHERE name = 'web'")
    report = reconcile(config, admin)
    assert report["orphans_deleted"] == ["web-1"]
    time.sleep(0.3)  # deleting -> gone
    assert [s["name"] for s in cloud.servers()] == ["web-0"]
    assert reconcile(config, admin)["orphans_deleted"] == []


def test_provider_none_provisions_nothing(cloud, config, admin, profile, clean_db):
    resp = config.post("/api/v1/deployments", json={"name": "manual", "profile": "worker", "count": 3},
                       headers=admin)
    assert resp.status_code == 201 and "provisioning" not in resp.json
    assert nodes(clean_db, "manual") == []
    assert cloud.log == []


def test_the_fleet_view_for_cleanup_lists_and_deletes_owned_servers_only(cloud, config, admin, profile, clean_db):
    from bootfleet.provision.fleet import Fleet

    create(config, admin, count=2)
    create(config, admin, name="api", count=1)
    foreign = cloud.add_foreign_server("web-5")
    fleet = Fleet()
    owned = {s.name: s.id for s in fleet.list_owned()}
    assert sorted(owned) == ["api-0", "web-0", "web-1"]
    cloud.delete_seconds = 30  # both stay `deleting` while we look, however slow this machine is
    fleet.delete(owned["api-0"])
    Fleet().delete(owned["web-1"])  # a fresh one finds the provider through the node
    deleted = {r.path.rsplit("/", 1)[1] for r in cloud.requests("DELETE", r"^/v1/bare_metal_servers/")}
    assert deleted == {owned["api-0"], owned["web-1"]}  # (gone after 0.2 s: the requests, not the status)
    assert foreign in {s["id"] for s in cloud.servers()}


def test_an_iam_outage_is_retried_at_once_not_after_the_sdks_60_s_pause(cloud, config, admin, profile, clean_db):
    # After a failed token request ibm-cloud-sdk-core makes every caller wait 60 s before it
    # asks IAM again; our retries reset that, so three IAM failures cost three retries, not
    # three minutes (a hang guard, not a speed claim: the bound is far from both).
    cloud.inject("POST", r"^/identity/token$", status=503, times=3)
    started = time.monotonic()
    deployment = create(config, admin, count=1)
    assert time.monotonic() - started < 45
    assert deployment["provisioning"]["created"] == ["web-0"], deployment["provisioning"]
    assert len(cloud.requests("POST", r"^/identity/token$")) == 4


def wait_for_status(cloud, wanted, timeout=10):
    deadline = time.monotonic() + timeout
    while {s["status"] for s in cloud.servers()} != {wanted} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {s["status"] for s in cloud.servers()} == {wanted}


def test_reinstall_stops_reinitializes_and_starts_a_bare_metal_server(cloud, config, admin, profile, clean_db):
    """A restart only reboots, and an installer may have overwritten the iPXE loader on the
    disk: reinstall stops the server, replaces its initialization (its image and keys, new
    user data) once it has stopped, and the API starts it again."""
    create(config, admin, count=1, placement={**PLACEMENT, "keys": "r006-key-1"})
    converge(config, admin, until=lambda r: all(n["instance_id"] and n["ip"] for n in nodes(clean_db)))
    wait_for_status(cloud, "running")
    node = nodes(clean_db)[0]
    record = cloud.records[node["instance_id"]]
    first_secret = re.search(r"&secret=([A-Za-z0-9_-]+) ", record.user_data).group(1)
    record.user_data = "#!ipxe\necho overwritten\n"  # what the API would hand out before the reinstall

    cloud.stop_seconds = 60  # a bare metal server takes its time to stop
    resp = config.post(f"/api/v1/nodes/{node['id']}/reinstall", headers=admin)
    assert resp.status_code == 200 and resp.json["stage"] == "registered"
    assert resp.json["reboot"] == {"server": node["instance_id"], "action": "stopping"}
    stop = cloud.requests("POST", rf"^/v1/bare_metal_servers/{node['instance_id']}/stop$")
    assert [r.body for r in stop] == [{"type": "hard"}]
    assert cloud.requests("PUT", r"/initialization$") == []  # not while it is still stopping

    assert reconcile(config, admin)["errors"] == [] and cloud.requests("PUT", r"/initialization$") == []
    cloud.stop_seconds = 0  # now it has stopped
    wait_for_status(cloud, "stopped")
    report = reconcile(config, admin)  # the next pass (cleanup runs one every 5 minutes) finishes it
    assert report["errors"] == []
    [put] = cloud.requests("PUT", rf"^/v1/bare_metal_servers/{node['instance_id']}/initialization$")
    assert put.body == {"image": {"id": "r006-ipxe-netboot"}, "keys": [{"id": "r006-key-1"}],
                        "user_data": record.user_data}
    assert record.user_data.startswith("#!ipxe") and f"{BASE}/boot/ipxe?mac=" in record.user_data
    # A new enrolment secret came with the new user data; the old one opens nothing now.
    from bootfleet.tokens import hash_secret

    new_secret = re.search(r"&secret=([A-Za-z0-9_-]+) ", record.user_data).group(1)
    assert new_secret != first_secret and nodes(clean_db)[0]["secret_hash"] == hash_secret(new_secret)
    assert record.reinitializations == 1 and record.restarts == 0
    wait_for_status(cloud, "running")  # the API starts a reinitialized server itself
    assert cloud.requests("POST", r"/start$") == []
    assert reconcile(config, admin)["errors"] == [] and record.reinitializations == 1  # once only
    messages = [e["message"] for e in events(clean_db, "provision")]
    assert any("stopping to reinstall" in m for m in messages)
    assert any("reinitialized with new user data to reinstall" in m for m in messages)


def test_the_fake_keeps_the_power_states_the_api_requires(cloud, config, admin, profile, clean_db):
    from ibm_cloud_sdk_core import ApiException

    from bootfleet.providers.vpc.ibm import IbmProvider

    create(config, admin, count=1)
    wait_for_status(cloud, "running")
    server_id = nodes(clean_db)[0]["instance_id"]
    vpc = IbmProvider.from_settings("bare_metal", "us-south").vpc
    with pytest.raises(ApiException) as e:
        vpc.replace_bare_metal_server_initialization(server_id, {"id": "r006-ipxe-netboot"}, [])
    assert e.value.status_code == 409 and "must be stopped" in e.value.message
    with pytest.raises(ApiException) as e:
        vpc.start_bare_metal_server(server_id)
    assert e.value.status_code == 409 and "must be stopped" in e.value.message
    vpc.stop_bare_metal_server(server_id, "hard")
    with pytest.raises(ApiException) as e:
        vpc.restart_bare_metal_server(server_id)
    assert e.value.status_code == 409 and "must be running" in e.value.message
    wait_for_status(cloud, "stopped")
    vpc.start_bare_metal_server(server_id)
    wait_for_status(cloud, "running")


def vsi(config, admin, settings, cloud, clean_db):
    """One running VSI from the custom iPXE image, with a key."""
    settings(vpc_vsi_image="r006-custom-ipxe")
    create(config, admin, name="vsi", count=1,
           placement={**PLACEMENT, "kind": "instance", "profile": "bx2-2x8", "keys": "r006-key-1"})
    wait_for_status(cloud, "running")
    return nodes(clean_db, "vsi")[0]


def test_reinstall_of_an_instance_stops_it_and_reinitializes_it_from_the_ipxe_image(cloud, config, admin, profile,
                                                                                    clean_db, settings):
    """An installer has written its OS to the boot volume: a reboot would boot that, never
    iPXE. Reinstall stops the instance, then reinitializes it (POST .../reinitialize) with
    its image, keys and user data: a new boot volume from the iPXE image, started by the API."""
    node = vsi(config, admin, settings, cloud, clean_db)
    server_id = node["instance_id"]
    record = cloud.records[server_id]
    created_with, first_volume = record.user_data, record.boot_volume
    record.user_data = "#!ipxe\necho overwritten\n"

    cloud.stop_seconds = 60  # it takes its time to stop
    resp = config.post(f"/api/v1/nodes/{node['id']}/reinstall", headers=admin)
    assert resp.status_code == 200 and resp.json["reboot"] == {"server": server_id, "action": "stopping"}
    assert [r.body for r in cloud.requests("POST", rf"^/v1/instances/{server_id}/actions$")] == [
        {"type": "stop", "force": True}]
    assert reconcile(config, admin, "vsi")["errors"] == []
    assert cloud.requests("POST", r"/reinitialize$") == []  # not while it is stopping

    cloud.stop_seconds = 0
    wait_for_status(cloud, "stopped")
    assert reconcile(config, admin, "vsi")["errors"] == []  # the next pass finishes it
    [sent] = cloud.requests("POST", rf"^/v1/instances/{server_id}/reinitialize$")
    assert sent.status == 204
    assert sent.body == {"image": {"id": "r006-custom-ipxe"}, "keys": [{"id": "r006-key-1"}],
                         "user_data": created_with}
    assert record.boot_volume != first_volume and record.reinitializations == 1 and record.restarts == 0
    vm = IbmProvider.from_settings("instance", "us-south").vpc.get_instance(server_id).get_result()
    assert vm["boot_volume_attachment"]["volume"]["id"] == record.boot_volume
    wait_for_status(cloud, "running")  # the API starts a reinitialized instance itself
    assert [r.body["type"] for r in cloud.requests("POST", rf"^/v1/instances/{server_id}/actions$")] == ["stop"]
    assert reconcile(config, admin, "vsi")["errors"] == [] and record.reinitializations == 1  # once only
    # A VSI boots a custom image that cannot read user data: no enrolment secret (it boots
    # from a boot network, docs/security.md).
    assert "secret=" not in record.user_data and nodes(clean_db, "vsi")[0]["secret_hash"] is None
    messages = [e["message"] for e in events(clean_db, "provision")]
    assert any("reinitialized with new user data to reinstall" in m for m in messages)


def test_a_stopped_instance_is_reinitialized_at_once(cloud, config, admin, profile, clean_db, settings):
    node = vsi(config, admin, settings, cloud, clean_db)
    vpc = IbmProvider.from_settings("instance", "us-south").vpc
    vpc.create_instance_action(node["instance_id"], "stop")
    wait_for_status(cloud, "stopped")
    resp = config.post(f"/api/v1/nodes/{node['id']}/reinstall", headers=admin)
    assert resp.json["reboot"] == {"server": node["instance_id"], "action": "reinitialized"}
    wait_for_status(cloud, "running")


def test_a_reinitialization_whose_answer_was_lost_is_not_sent_again(cloud, config, admin, profile, clean_db,
                                                                   settings):
    node = vsi(config, admin, settings, cloud, clean_db)
    IbmProvider.from_settings("instance", "us-south").vpc.create_instance_action(node["instance_id"], "stop")
    wait_for_status(cloud, "stopped")
    cloud.inject("POST", r"/reinitialize$", status=502, apply=True)  # done, but the answer is lost
    resp = config.post(f"/api/v1/nodes/{node['id']}/reinstall", headers=admin)
    assert resp.json["reboot"] == {"server": node["instance_id"], "action": "reinitialized"}
    assert len(cloud.requests("POST", r"/reinitialize$")) == 1
    assert cloud.records[node["instance_id"]].reinitializations == 1


def test_the_fake_refuses_to_reinitialize_an_instance_that_is_not_stopped_or_from_a_catalog_offering(
        cloud, config, admin, profile, clean_db, settings):
    from ibm_cloud_sdk_core import ApiException
    from ibm_vpc import vpc_v1

    node = vsi(config, admin, settings, cloud, clean_db)
    server_id = node["instance_id"]
    vpc = IbmProvider.from_settings("instance", "us-south").vpc
    prototype = vpc_v1.InstanceReinitializePrototypeInstanceReinitializeByImage(
        image=vpc_v1.ImageIdentityById(id="r006-custom-ipxe"))
    with pytest.raises(ApiException) as e:
        vpc.create_instance_reinitialization(server_id, prototype)
    assert e.value.status_code == 409 and "must be stopped" in e.value.message
    with pytest.raises(ApiException) as e:
        vpc.create_instance_action(server_id, "start")
    assert e.value.status_code == 409
    record = cloud.records[server_id]
    record.catalog_offering = True
    vpc_v1.Instance.from_dict(vpc.get_instance(server_id).get_result())  # the view still parses
    vpc.create_instance_action(server_id, "stop")
    wait_for_status(cloud, "stopped")
    with pytest.raises(ApiException) as e:
        vpc.create_instance_reinitialization(server_id, prototype)
    assert e.value.status_code == 400 and "catalog offering" in e.value.message
    resp = config.post(f"/api/v1/nodes/{node['id']}/reinstall", headers=admin)  # bootfleet says why
    assert "catalog offering" in resp.json["reboot"]["error"] and record.reinitializations == 0


def test_a_bare_metal_server_whose_reinitialization_failed_is_reinitialized_again(cloud, config, admin, profile,
                                                                                  clean_db):
    """A failed reinitialization leaves the server `failed` (reason cannot_reinitialize);
    a reinstall then reinitializes it again, without a stop it could not take."""
    create(config, admin, count=1, placement={**PLACEMENT, "keys": "r006-key-1"})
    wait_for_status(cloud, "running")
    node = nodes(clean_db)[0]
    server_id = node["instance_id"]
    cloud.fail_reinitialization(server_id)
    cloud.stop_seconds = 0
    resp = config.post(f"/api/v1/nodes/{node['id']}/reinstall", headers=admin)
    assert resp.json["reboot"]["action"] in ("stopping", "reinitialized")
    converge(config, admin, until=lambda r: cloud.records[server_id].reinitializations == 1, timeout=5)
    wait_for_status(cloud, "failed")
    [failed] = cloud.servers()
    assert [r["code"] for r in failed["status_reasons"]] == ["cannot_reinitialize"]

    resp = config.post(f"/api/v1/nodes/{node['id']}/reinstall", headers=admin)
    assert resp.json["reboot"] == {"server": server_id, "action": "reinitialized"}
    assert len(cloud.requests("POST", rf"^/v1/bare_metal_servers/{server_id}/stop$")) == 1  # the first only
    assert cloud.records[server_id].reinitializations == 2
    wait_for_status(cloud, "running")
    assert reconcile(config, admin)["errors"] == [] and cloud.records[server_id].reinitializations == 2


def test_reinstall_of_a_server_bootfleet_did_not_create_says_so(config, admin, clean_db):
    from support.helpers import make_node

    node = make_node(config, admin, instance_id="0717-someone-elses")
    resp = config.post(f"/api/v1/nodes/{node['id']}/reinstall", headers=admin)
    assert resp.status_code == 200 and "power-cycle it yourself" in resp.json["reboot"]["error"]


def test_a_server_whose_tag_does_not_show_yet_is_claimed_again_and_cleanup_keeps_track(settings, config, admin,
                                                                                         profile, clean_db):
    """Global Tagging is eventually consistent: a server bootfleet created and tagged may
    not list as owned for a while. Cleanup's view counts the servers nodes record, and the
    provisioner tags a recorded server again until its tag shows."""
    from fakes.vpc_api import API_KEY, FakeCloud

    from bootfleet.provision.fleet import Fleet

    cloud = FakeCloud(boot_seconds=0.1, tag_delay=60).start()
    try:
        settings(ibmcloud_api_key=API_KEY, ibm_iam_url=cloud.iam_url, vpc_url=cloud.vpc_url,
                 tagging_url=cloud.tagging_url, ibm_timeout=1, ibm_backoff_ms=50, base_url=BASE)
        create(config, admin, count=1)
        server_id = nodes(clean_db)[0]["instance_id"]
        assert Fleet().list_owned()[0].id == server_id  # recorded: owned, though no tag shows yet
        report = reconcile(config, admin)
        assert report["errors"] == []
        assert len(cloud.requests("POST", r"^/v3/tags/attach$")) == 2  # tagged again
        assert any("tagged again" in e["message"] for e in events(clean_db, "provision"))
        cloud.tag_delay = 0  # time passes: the tags show
        reconcile(config, admin)
        assert len(cloud.requests("POST", r"^/v3/tags/attach$")) == 2  # it shows now: no more
        # A pass that lost the record still finds its server by the tag.
        with clean_db.transaction() as tx:
            tx.run("UPDATE node SET instance_id = NULL")
        assert [s.id for s in Fleet().list_owned()] == [server_id]
    finally:
        cloud.stop()


def test_provisioning_errors_name_ibms_code_and_trace(cloud, config, admin, profile, clean_db):
    cloud.inject("POST", r"^/v1/bare_metal_servers$", status=403, code="not_authorized_for_profile",
                 message="You are not authorized to use this profile")
    deployment = create(config, admin, count=1)
    [error] = deployment["provisioning"]["errors"]
    [event] = [e["message"] for e in events(clean_db, "error")]
    trace = error.rsplit("trace ", 1)[1].rstrip(")")
    assert error == event and "(not_authorized_for_profile, HTTP 403, trace " in error
    assert any(r.status == 403 for r in cloud.requests("POST", r"^/v1/bare_metal_servers$")) and len(trace) == 36
