"""cleanup on a real PostgreSQL: each action, the dry run, the lock, pruning.
(cloud, rfc2136 and fleet: tests/functional/conftest.py)"""

import re
import threading

import pytest
from support.dns_bind import REVERSE_ZONE, ZONE, named_binary
from support.helpers import make_node, make_profile, ready_node, snapshot
from support.provisioning import converge, create, nodes

from bootfleet.cleanup import LOCK_NAME


@pytest.fixture
def cleanup_client(function_apps, clean_db):
    return function_apps["cleanup"].test_client()


def age(database, node_id, seconds, stage=None):
    with database.transaction() as tx:
        tx.run("UPDATE node SET stage_changed_at = now() - make_interval(secs => :s)"
               + (", stage = :stage" if stage else "") + " WHERE id = :id",
               s=seconds, id=node_id, **({"stage": stage} if stage else {}))


def stage_of(database, node_id):
    with database.transaction() as tx:
        return tx.scalar("SELECT stage FROM node WHERE id = :id", id=node_id)


def test_needs_admin_token_or_cron_secret(cleanup_client, admin, settings):
    assert cleanup_client.post("/run").status_code == 401
    assert cleanup_client.post("/run", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert cleanup_client.post("/run", headers=admin).status_code == 200
    settings(cron_secret="cron-secret-1")
    assert cleanup_client.post("/run", json={"secret": "cron-secret-1"}).status_code == 200
    assert cleanup_client.post("/run", headers={"Authorization": "Bearer cron-secret-1"}).status_code == 200
    assert cleanup_client.post("/run", json={"secret": "wrong"}).status_code == 401


def test_stuck_nodes_fail_with_an_event_naming_stage_and_time(boot, config, admin, cleanup_client, clean_db):
    make_profile(config, admin)
    stuck = make_node(config, admin, mac="52:54:00:00:00:01", profile="worker")
    fresh = make_node(config, admin, mac="52:54:00:00:00:02", profile="worker")
    boot.get("/ipxe?mac=52:54:00:00:00:01")
    boot.get("/ipxe?mac=52:54:00:00:00:02")
    age(clean_db, stuck["id"], 16 * 60)  # booting for 16 minutes; the limit is 15

    dry = cleanup_client.post("/run?dry_run=true", headers=admin).json
    assert dry["dry_run"] is True and dry["counts"] == {"node_timed_out": 1}
    assert stage_of(clean_db, stuck["id"]) == "booting"

    summary = cleanup_client.post("/run", headers=admin).json
    assert summary["counts"] == {"node_timed_out": 1} and summary["errors"] == []
    assert "duration_s" in summary
    assert stage_of(clean_db, stuck["id"]) == "failed"
    assert stage_of(clean_db, fresh["id"]) == "booting"
    events = config.get(f"/api/v1/nodes/{stuck['id']}", headers=admin)
    with clean_db.transaction() as tx:
        message = tx.scalar("SELECT message FROM event WHERE node_id = :id AND stage = 'failed'", id=stuck["id"])
    # 16m 0s when aged; a second more if the machine is slow between the aging and the run
    assert re.fullmatch(r"timed out in booting after 16m [0-9]+s \(limit 15m 0s\)", message), message
    assert events.status_code == 200
    # A second run finds nothing more to do.
    assert cleanup_client.post("/run", headers=admin).json["counts"] == {}


def test_dry_run_changes_nothing(boot, config, admin, cleanup_client, clean_db):
    make_profile(config, admin)
    config.post("/api/v1/deployments", json={"name": "gone", "profile": "worker"}, headers=admin)
    node = make_node(config, admin, deployment="gone")
    boot.get("/ipxe?mac=52:54:00:00:00:01")
    age(clean_db, node["id"], 3600)
    config.delete("/api/v1/deployments/gone", headers=admin)
    with clean_db.transaction() as tx:
        tx.run("UPDATE event SET created_at = now() - interval '40 days' WHERE id = 1")
    before = snapshot(clean_db)
    plan = cleanup_client.post("/run?dry_run=1", headers=admin).json
    assert plan["counts"]["node_deleted"] == 1 and plan["counts"]["events_pruned"] == 1
    assert snapshot(clean_db) == before


def test_deleted_deployment_is_torn_down(config, admin, cleanup_client, clean_db):
    make_profile(config, admin)
    config.post("/api/v1/deployments", json={"name": "old", "profile": "worker"}, headers=admin)
    nodes = [make_node(config, admin, mac=f"52:54:00:00:00:0{i}", deployment="old") for i in range(3)]
    config.delete("/api/v1/deployments/old", headers=admin)
    summary = cleanup_client.post("/run", headers=admin).json
    assert summary["counts"] == {"node_deleted": 3, "deployment_deleted": 1}
    for node in nodes:
        assert stage_of(clean_db, node["id"]) == "deleted"
    assert config.get("/api/v1/deployments/old", headers=admin).json["state"] == "deleted"
    # The MACs are free for new nodes.
    make_node(config, admin, mac="52:54:00:00:00:00")


def test_old_events_and_deleted_nodes_are_pruned(config, admin, cleanup_client, clean_db):
    node = make_node(config, admin)
    keep = make_node(config, admin, mac="52:54:00:00:00:02")
    with clean_db.transaction() as tx:
        tx.run("UPDATE event SET created_at = now() - interval '31 days' WHERE node_id = :id", id=node["id"])
        tx.run("UPDATE node SET stage = 'deleted', stage_changed_at = now() - interval '31 days' WHERE id = :id",
               id=node["id"])
    summary = cleanup_client.post("/run", headers=admin).json
    assert summary["counts"] == {"events_pruned": 1, "nodes_removed": 1}
    with clean_db.transaction() as tx:
        assert tx.scalar("SELECT count(*) FROM node WHERE id = :id", id=node["id"]) == 0
        assert tx.scalar("SELECT count(*) FROM node WHERE id = :id", id=keep["id"]) == 1
        assert tx.scalar("SELECT count(*) FROM event WHERE node_id = :id", id=node["id"]) == 0
        assert tx.scalar("SELECT count(*) FROM event WHERE source = 'cleanup' AND message LIKE 'pruned%'") == 1


def test_overlapping_runs_never_both_act(cleanup_client, admin, clean_db):
    held, release = threading.Event(), threading.Event()

    def hold_lock():
        with clean_db.connection() as conn:
            conn.run("SELECT pg_advisory_lock(hashtext(:k))", k=LOCK_NAME)
            held.set()
            release.wait(10)
            conn.run("SELECT pg_advisory_unlock(hashtext(:k))", k=LOCK_NAME)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    held.wait(5)
    try:
        resp = cleanup_client.post("/run", headers=admin)
        assert resp.status_code == 409 and "another cleanup run" in resp.json["error"]
    finally:
        release.set()
        holder.join()
    assert cleanup_client.post("/run", headers=admin).status_code == 200


def test_bad_dry_run_value(cleanup_client, admin):
    resp = cleanup_client.post("/run?dry_run=maybe", headers=admin)
    assert resp.status_code == 400 and "dry_run" in resp.json["error"]


# --- with servers (the fake VPC API through the real SDK) and DNS (a real BIND) -----------------


def _mark_deleted(database, name):
    """What DELETE /deployments does, without its immediate provisioning pass."""
    from bootfleet.db import deployments

    with database.transaction() as tx:
        deployments.mark_deleted(tx, name, "operator")


def test_deleted_deployment_servers_go_within_the_cap(cloud, config, admin, cleanup_client, clean_db, settings):
    make_profile(config, admin)
    create(config, admin, name="web", count=3)
    converge(config, admin, "web", until=lambda r: all(n["instance_id"] for n in nodes(clean_db, "web")))
    _mark_deleted(clean_db, "web")
    deletes_before = len(cloud.requests("DELETE", r"^/v1/bare_metal_servers/"))

    settings(cleanup_cap=2)
    capped = cleanup_client.post("/run", headers=admin).json
    assert capped["capped"] is True and "cap" in capped["message"]
    assert len(cloud.requests("DELETE", r"^/v1/bare_metal_servers/")) == deletes_before  # nothing deleted
    assert {n["stage"] for n in nodes(clean_db, "web")} == {"deprovisioning"}

    plan = cleanup_client.post("/run?dry_run=true", headers={**admin}).json
    assert plan["capped"] is True
    settings(cleanup_cap=50)
    plan = cleanup_client.post("/run?dry_run=true", headers=admin).json
    assert plan["counts"]["server_deleted"] == 3
    assert len(cloud.requests("DELETE", r"^/v1/bare_metal_servers/")) == deletes_before

    done = cleanup_client.post("/run", headers=admin).json
    assert done["counts"]["server_deleted"] == 3 and done["errors"] == []
    assert len(cloud.requests("DELETE", r"^/v1/bare_metal_servers/")) == deletes_before + 3
    # each is deleting, or already gone (the fake finishes a delete 0.2 s later: a loaded machine sees that)
    assert {s["status"] for s in cloud.servers()} <= {"deleting"}
    for _ in range(50):  # the servers finish deleting; a later run finishes the deployment
        summary = cleanup_client.post("/run", headers=admin).json
        if summary["counts"].get("deployment_deleted"):
            break
        import time
        time.sleep(0.1)
    assert config.get("/api/v1/deployments/web", headers=admin).json["state"] == "deleted"
    assert cloud.servers() == []


def test_owned_orphans_go_after_the_grace_period_and_foreign_servers_never(
        cloud, config, admin, cleanup_client, clean_db, settings):
    make_profile(config, admin)
    create(config, admin, name="web", count=1)
    converge(config, admin, "web", until=lambda r: all(n["instance_id"] for n in nodes(clean_db, "web")))
    foreign = cloud.add_foreign_server("web-9")
    with clean_db.transaction() as tx:  # the node lost its server's record; the deployment is gone
        tx.run("UPDATE node SET instance_id = NULL, stage = 'deleted'")
        tx.run("UPDATE deployment SET state = 'deleted'")
    orphan = next(s["id"] for s in cloud.servers() if s["name"] == "web-0")

    young = cleanup_client.post("/run", headers=admin).json
    assert "orphan_server_deleted" not in young["counts"]  # within the grace period

    settings(cleanup_grace=0)
    summary = cleanup_client.post("/run", headers=admin).json
    assert summary["counts"]["orphan_server_deleted"] == 1
    assert [a["instance_id"] for a in summary["actions"] if a["action"] == "orphan_server_deleted"] == [orphan]
    touched = [r for r in cloud.log if r.method != "GET" and foreign in r.path]
    assert touched == [] and foreign in {s["id"] for s in cloud.servers()}
    with clean_db.transaction() as tx:
        assert tx.scalar("SELECT count(*) FROM event WHERE source = 'cleanup' AND message LIKE 'orphaned server%'") == 1


def test_a_failing_server_delete_is_reported_and_the_run_goes_on(
        cloud, config, admin, cleanup_client, clean_db, settings):
    make_profile(config, admin)
    create(config, admin, name="web", count=1)
    converge(config, admin, "web", until=lambda r: all(n["instance_id"] for n in nodes(clean_db, "web")))
    stuck = make_node(config, admin, mac="52:54:00:00:0f:01")
    with clean_db.transaction() as tx:
        tx.run("UPDATE node SET instance_id = NULL, stage = 'deleted' WHERE hostname = 'web-0'")
        tx.run("UPDATE deployment SET state = 'deleted'")
        tx.run("UPDATE node SET stage = 'booting', stage_changed_at = now() - interval '1 hour' WHERE id = :id",
               id=stuck["id"])
    cloud.inject("DELETE", r"^/v1/bare_metal_servers/", status=500, times=100)  # the API keeps failing deletes
    settings(cleanup_grace=0)
    summary = cleanup_client.post("/run", headers=admin).json
    assert summary["errors"] and summary["errors"][0]["action"] == "orphan_server_deleted"
    assert "internal error" in summary["errors"][0]["error"].lower()
    assert summary["counts"]["node_timed_out"] == 1
    assert stage_of(clean_db, stuck["id"]) == "failed"


@pytest.mark.skipif(named_binary() is None, reason="apt-get install bind9 dnsutils")
def test_records_of_a_deleted_deployment_are_removed(rfc2136, fleet, config, boot, status, admin, cleanup_client,
                                                     clean_db, settings):
    settings()
    ready_node(config, boot, status, admin, "52:54:00:00:00:01", "web1", "10.0.0.5")
    assert rfc2136.lookup(f"web1.{ZONE}", "A") == ["10.0.0.5"]
    assert config.delete("/api/v1/deployments/rack1", headers=admin).status_code == 202

    plan = cleanup_client.post("/run?dry_run=true", headers=admin).json
    assert plan["counts"]["record_deleted"] == 3  # A, PTR and the deployment name
    assert rfc2136.lookup(f"web1.{ZONE}", "A") == ["10.0.0.5"]

    summary = cleanup_client.post("/run", headers=admin).json
    assert summary["errors"] == [] and summary["counts"]["record_deleted"] == 3
    assert summary["counts"]["deployment_deleted"] == 1
    for name, rtype in ((f"web1.{ZONE}", "A"), (f"5.0.0.{REVERSE_ZONE}", "PTR"), (f"api.rack1.{ZONE}", "A")):
        assert rfc2136.lookup(name, rtype) == [], name
    assert cleanup_client.post("/run", headers=admin).json["counts"] == {}
