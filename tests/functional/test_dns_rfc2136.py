"""dns with RFC 2136 against a real BIND on 127.0.0.1, checked with real queries.
(bind, rfc2136 and fleet: tests/functional/conftest.py)"""

import pytest
from support.dns_bind import INSTALL_HINT, REVERSE_ZONE, ZONE, named_binary
from support.helpers import ready_node, snapshot

pytestmark = pytest.mark.skipif(named_binary() is None, reason=INSTALL_HINT)


def events(db, kind="dns"):
    with db.transaction() as tx:
        return [e["message"] for e in tx.all("SELECT message FROM event WHERE kind = :k ORDER BY id", k=kind)]


def test_ready_node_gets_a_and_ptr_on_the_server_within_the_report(rfc2136, fleet, config, boot, status, admin,
                                                                     clean_db):
    ready_node(config, boot, status, admin, "52:54:00:00:00:01", "web1", "10.0.0.5")
    assert rfc2136.lookup(f"web1.{ZONE}", "A") == ["10.0.0.5"]
    assert rfc2136.lookup(f"5.0.0.{REVERSE_ZONE}", "PTR") == [f"web1.{ZONE}."]
    assert rfc2136.lookup(f"api.rack1.{ZONE}", "A") == ["10.0.0.5"]
    assert rfc2136.lookup(f"_bootfleet-owner.web1.{ZONE}", "TXT") == ["heritage=bootfleet,owner=bootfleet"]
    with clean_db.transaction() as tx:
        rows = tx.all("SELECT zone, name, type, value FROM dns_record ORDER BY name")
    assert rows == [
        {"zone": REVERSE_ZONE, "name": f"5.0.0.{REVERSE_ZONE}", "type": "PTR", "value": f"web1.{ZONE}"},
        {"zone": ZONE, "name": f"api.rack1.{ZONE}", "type": "A", "value": "10.0.0.5"},
        {"zone": ZONE, "name": f"web1.{ZONE}", "type": "A", "value": "10.0.0.5"},
    ]
    # a second node joins the deployment name
    ready_node(config, boot, status, admin, "52:54:00:00:00:02", "web2", "10.0.0.6")
    assert rfc2136.lookup(f"api.rack1.{ZONE}", "A") == ["10.0.0.5", "10.0.0.6"]


def test_a_reconcile_with_nothing_changed_makes_zero_writes(rfc2136, fleet, config, boot, status, admin, dns,
                                                             clean_db):
    ready_node(config, boot, status, admin, "52:54:00:00:00:01", "web1", "10.0.0.5")
    ready_node(config, boot, status, admin, "52:54:00:00:00:02", "web2", "10.0.0.6")
    updates, serial = rfc2136.updates(), rfc2136.serial()
    before = snapshot(clean_db)
    resp = dns.post("/reconcile", headers=admin)
    assert resp.status_code == 200, resp.json
    assert resp.json["counts"]["planned"] == 0 and resp.json["counts"]["unchanged"] == 6
    assert resp.json["provider_writes"] == 0
    assert rfc2136.updates() == updates and rfc2136.serial() == serial
    assert snapshot(clean_db) == before


def test_ip_change_moves_the_records(rfc2136, fleet, config, boot, status, admin, clean_db):
    node = ready_node(config, boot, status, admin, "52:54:00:00:00:01", "web1", "10.0.0.5")
    updates = rfc2136.updates()
    resp = config.patch(f"/api/v1/nodes/{node['id']}", json={"ip": "10.0.1.9"}, headers=admin)
    assert resp.status_code == 200
    assert rfc2136.lookup(f"web1.{ZONE}", "A") == ["10.0.1.9"]
    assert rfc2136.lookup(f"api.rack1.{ZONE}", "A") == ["10.0.1.9"]
    assert rfc2136.lookup(f"9.1.0.{REVERSE_ZONE}", "PTR") == [f"web1.{ZONE}."]
    assert rfc2136.lookup(f"5.0.0.{REVERSE_ZONE}", "PTR") == []
    assert rfc2136.lookup(f"_bootfleet-owner.5.0.0.{REVERSE_ZONE}", "TXT") == []
    # one UPDATE per changed name: web1, api.rack1, the old and the new PTR
    assert rfc2136.updates() - updates == 4


def test_deleting_a_node_removes_its_records(rfc2136, fleet, config, boot, status, admin, clean_db):
    node = ready_node(config, boot, status, admin, "52:54:00:00:00:01", "web1", "10.0.0.5")
    assert config.delete(f"/api/v1/nodes/{node['id']}", headers=admin).status_code == 204
    for name, rtype in ((f"web1.{ZONE}", "A"), (f"5.0.0.{REVERSE_ZONE}", "PTR"), (f"api.rack1.{ZONE}", "A"),
                        (f"_bootfleet-owner.web1.{ZONE}", "TXT")):
        assert rfc2136.lookup(name, rtype) == [], name
    with clean_db.transaction() as tx:
        assert tx.scalar("SELECT count(*) FROM dns_record") == 0


def test_a_foreign_record_is_a_conflict_and_never_touched(rfc2136, fleet, config, boot, status, admin, dns, clean_db):
    rfc2136.nsupdate(ZONE, ("add", f"web3.{ZONE}.", "A", "10.9.9.9"), ("add", f"manual.{ZONE}.", "A", "10.9.9.8"))
    node = ready_node(config, boot, status, admin, "52:54:00:00:00:03", "web3", "10.0.0.7")
    assert rfc2136.lookup(f"web3.{ZONE}", "A") == ["10.9.9.9"]
    assert any("web3.example.test not created" in m and "did not create" in m for m in events(clean_db))
    resp = dns.post("/reconcile", headers=admin)
    assert resp.status_code == 200
    assert sorted((c["name"], c["type"], c["value"]) for c in resp.json["conflicts"]) == [
        (f"7.0.0.{REVERSE_ZONE}", "PTR", f"web3.{ZONE}"), (f"web3.{ZONE}", "A", "10.0.0.7")]
    assert "A 10.9.9.9" in next(c["reason"] for c in resp.json["conflicts"] if c["type"] == "A")
    # no PTR to a name someone else holds; the deployment name is bootfleet's; the foreign ones stay
    assert rfc2136.lookup(f"7.0.0.{REVERSE_ZONE}", "PTR") == []
    assert rfc2136.lookup(f"api.rack1.{ZONE}", "A") == ["10.0.0.7"]
    assert rfc2136.lookup(f"web3.{ZONE}", "A") == ["10.9.9.9"]
    assert rfc2136.lookup(f"manual.{ZONE}", "A") == ["10.9.9.8"]
    # even when the node goes, the hand-made records stay
    config.delete(f"/api/v1/nodes/{node['id']}", headers=admin)
    dns.post("/reconcile", headers=admin)
    assert rfc2136.lookup(f"web3.{ZONE}", "A") == ["10.9.9.9"]
    assert rfc2136.lookup(f"manual.{ZONE}", "A") == ["10.9.9.8"]


def test_dry_run_plans_and_writes_nothing_then_the_run_applies(bind, settings, fleet, config, boot, status, admin,
                                                                dns, clean_db):
    ready_node(config, boot, status, admin, "52:54:00:00:00:04", "web4", "10.0.0.8")  # no provider yet
    settings(bind.env())
    updates, before = bind.updates(), snapshot(clean_db)
    resp = dns.post("/reconcile", json={"dry_run": True, "deployment": "rack1"}, headers=admin)
    assert resp.status_code == 200, resp.json
    assert sorted((p["action"], p["type"], p["name"]) for p in resp.json["plan"]) == [
        ("create", "A", f"api.rack1.{ZONE}"), ("create", "A", f"web4.{ZONE}"),
        ("create", "PTR", f"8.0.0.{REVERSE_ZONE}")]
    assert resp.json["applied"] == [] and bind.updates() == updates and snapshot(clean_db) == before
    assert bind.lookup(f"web4.{ZONE}", "A") == []
    resp = dns.post("/reconcile", json={"deployment": "rack1"}, headers=admin)
    assert resp.json["counts"]["applied"] == 3 and bind.updates() - updates == 3
    assert bind.lookup(f"web4.{ZONE}", "A") == ["10.0.0.8"]


def test_a_dns_server_that_is_down_fails_nothing_and_the_next_run_catches_up(bind, settings, fleet, config, boot,
                                                                              status, admin, dns, clean_db):
    from support.server import free_port

    settings(bind.env(), dns_port=free_port())
    ready_node(config, boot, status, admin, "52:54:00:00:00:05", "web5", "10.0.0.9")  # the report still works
    assert any(m.startswith(f"dns: read {ZONE} failed") and "refused" in m for m in events(clean_db))
    resp = dns.post("/reconcile", headers=admin)
    assert resp.status_code == 200 and resp.json["failed"] and "failed" in resp.json["failed"][0]["error"]
    settings(dns_port=bind.port)
    resp = dns.post("/reconcile", headers=admin)
    assert resp.json["failed"] == []
    assert {f"9.0.0.{REVERSE_ZONE}", f"api.rack1.{ZONE}", f"web5.{ZONE}"} <= {
        a["name"] for a in resp.json["applied"] if a["action"] in ("create", "update")}
    assert bind.lookup(f"api.rack1.{ZONE}", "A") == ["10.0.0.9"]
    assert bind.lookup(f"web5.{ZONE}", "A") == ["10.0.0.9"]


def test_records_lists_what_bootfleet_owns(rfc2136, fleet, config, boot, status, admin, dns):
    ready_node(config, boot, status, admin, "52:54:00:00:00:01", "web1", "10.0.0.5")
    resp = dns.get("/records?deployment=rack1", headers=admin)
    assert resp.status_code == 200 and resp.json["total"] == 3
    assert {(r["type"], r["name"]) for r in resp.json["items"]} == {
        ("A", f"web1.{ZONE}"), ("A", f"api.rack1.{ZONE}"), ("PTR", f"5.0.0.{REVERSE_ZONE}")}


@pytest.mark.parametrize("body,code,words", [
    ({"dry_run": "yes"}, 400, "dry_run"),
    ({"deployment": "nope"}, 404, "deployment 'nope' not found"),
    ({"everything": True}, 400, "everything"),
    ([1], 400, "JSON object"),
])
def test_bad_reconcile_requests_are_refused_and_change_nothing(rfc2136, fleet, admin, dns, clean_db, body, code,
                                                               words):
    before, updates = snapshot(clean_db), rfc2136.updates()
    resp = dns.post("/reconcile", json=body, headers=admin)
    assert resp.status_code == code and words in resp.json["error"], resp.json
    assert snapshot(clean_db) == before and rfc2136.updates() == updates


def test_reconcile_needs_the_admin_token_and_a_provider(dns, admin, clean_db):
    assert dns.post("/reconcile").status_code == 401
    resp = dns.post("/reconcile", headers=admin)
    assert resp.status_code == 409 and "BOOTFLEET_DNS_PROVIDER" in resp.json["error"]
    assert dns.get("/records?limit=0", headers=admin).status_code == 400
