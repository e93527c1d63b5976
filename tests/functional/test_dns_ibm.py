"""dns with IBM Cloud DNS Services: the real SDK (DnsSvcsV1, IAMAuthenticator) against a
local fake of the service with its real paths, JSON, ids, paging and PTR rule."""

import time

import pytest
from fakes.ibm_dns_services import API_KEY, FakeDnsServices
from support.helpers import make_dns_fleet, make_profile, ready_node, snapshot

ZONE = "fleet.example.com"
INSTANCE = "434f6c3e-6014-4124-a61d-2e910bca19b1"
ZONE_ID = "d04d3a7a-7f6d-47d4-b811-08c5478fa1a4"


@pytest.fixture
def fake(settings):
    service = FakeDnsServices(INSTANCE, {ZONE_ID: ZONE}, require_auth=True).start()
    settings(
        dns_provider="ibm",
        dns_zone=ZONE,
        dns_reverse_zone="10.in-addr.arpa",  # PTRs for 10.x (empty: none)
        ibm_dns_instance_id=INSTANCE,
        ibm_dns_zone_id=f"{ZONE}={ZONE_ID}",
        ibmcloud_api_key=API_KEY,
        ibm_dns_url=service.service_url,
        ibm_iam_url=service.url,
        ibm_backoff_ms=10,
    )
    yield service
    service.stop()


@pytest.fixture
def fleet(config, admin, boot):
    """A deployment `rack1` in ZONE whose `api` name spans its ready nodes."""
    return make_dns_fleet(config, admin, ZONE)


def held(fake):
    return sorted((r["type"], r["name"], r["rdata"].get("ip") or r["rdata"].get("ptrdname") or r["rdata"].get("text"))
                  for r in fake.all(ZONE_ID))


def test_ready_node_gets_a_and_ptr_records_with_ids(fake, fleet, config, boot, status, admin, clean_db):
    ready_node(config, boot, status, admin, "52:54:00:00:00:01", "web1", "10.0.0.5")
    assert held(fake) == [("A", f"api.rack1.{ZONE}", "10.0.0.5"), ("A", f"web1.{ZONE}", "10.0.0.5"),
                          ("PTR", "5.0.0.10.in-addr.arpa", f"web1.{ZONE}")]
    ids = {r["id"] for r in fake.all(ZONE_ID)}
    assert all(i.split(":")[0] in ("A", "PTR") and len(i.split(":")[1]) == 36 for i in ids)
    with clean_db.transaction() as tx:
        assert {r["provider_id"] for r in tx.all("SELECT provider_id FROM dns_record")} == ids
    assert fake.tokens, "the SDK fetched an IAM token from the fake IAM endpoint"


def test_no_change_reconcile_makes_zero_writes_and_pages_through_the_zone(fake, fleet, config, boot, status, admin,
                                                                          dns, clean_db):
    for i in range(450):  # records made by hand elsewhere in the zone
        fake.add(ZONE_ID, "A", f"manual{i}", {"ip": f"192.168.{i // 250}.{i % 250 + 1}"})
    ready_node(config, boot, status, admin, "52:54:00:00:00:01", "web1", "10.0.0.5")
    fake.reset_counts()
    before = snapshot(clean_db)
    resp = dns.post("/reconcile", headers=admin)
    assert resp.status_code == 200, resp.json
    assert resp.json["counts"] == {"planned": 0, "applied": 0, "failed": 0, "conflicts": 0, "skipped": 0,
                                   "unchanged": 3}
    assert fake.writes == 0
    assert fake.reads == 3  # 453 records in pages of 200
    assert snapshot(clean_db) == before
    assert len(fake.all(ZONE_ID)) == 453


def test_ip_change_deletes_the_old_ptr_first_and_updates_the_a_record(fake, fleet, config, boot, status, admin,
                                                                      clean_db):
    node = ready_node(config, boot, status, admin, "52:54:00:00:00:01", "web1", "10.0.0.5")
    a_id = next(r["id"] for r in fake.all(ZONE_ID) if r["name"] == f"web1.{ZONE}")
    fake.reset_counts()
    resp = config.patch(f"/api/v1/nodes/{node['id']}", json={"ip": "10.0.1.9"}, headers=admin)
    assert resp.status_code == 200
    assert held(fake) == [("A", f"api.rack1.{ZONE}", "10.0.1.9"), ("A", f"web1.{ZONE}", "10.0.1.9"),
                          ("PTR", "9.1.0.10.in-addr.arpa", f"web1.{ZONE}")]
    assert next(r["id"] for r in fake.all(ZONE_ID) if r["name"] == f"web1.{ZONE}") == a_id  # updated in place
    assert (fake.calls["DELETE"], fake.calls["PUT"], fake.calls["POST"]) == (1, 2, 1)


def test_deleting_a_node_removes_its_records(fake, fleet, config, boot, status, admin, clean_db):
    node = ready_node(config, boot, status, admin, "52:54:00:00:00:01", "web1", "10.0.0.5")
    fake.add(ZONE_ID, "A", "manual", {"ip": "10.9.9.8"})
    assert config.delete(f"/api/v1/nodes/{node['id']}", headers=admin).status_code == 204
    assert held(fake) == [("A", f"manual.{ZONE}", "10.9.9.8")]
    with clean_db.transaction() as tx:
        assert tx.scalar("SELECT count(*) FROM dns_record") == 0


def test_a_hand_made_record_at_the_name_is_a_conflict_and_stays(fake, fleet, config, boot, status, admin, dns,
                                                                clean_db):
    fake.add(ZONE_ID, "A", "web3", {"ip": "10.9.9.9"})
    fake.add(ZONE_ID, "TXT", "api.rack1", {"text": "hand made"})
    ready_node(config, boot, status, admin, "52:54:00:00:00:03", "web3", "10.0.0.7")
    assert held(fake) == [("A", f"web3.{ZONE}", "10.9.9.9"), ("TXT", f"api.rack1.{ZONE}", "hand made")]
    resp = dns.post("/reconcile", headers=admin)
    assert {(c["type"], c["name"]) for c in resp.json["conflicts"]} == {
        ("A", f"web3.{ZONE}"), ("PTR", "7.0.0.10.in-addr.arpa"), ("A", f"api.rack1.{ZONE}")}
    assert resp.json["provider_writes"] == 0
    with clean_db.transaction() as tx:
        messages = [e["message"] for e in tx.all("SELECT message FROM event WHERE kind = 'dns'")]
    assert any(f"A web3.{ZONE} not created" in m and "A 10.9.9.9" in m for m in messages)


def test_provider_errors_become_events_and_the_next_reconcile_retries(fake, fleet, config, boot, status, admin, dns,
                                                                      clean_db):
    fake.fail("POST", 500, times=100)
    ready_node(config, boot, status, admin, "52:54:00:00:00:01", "web1", "10.0.0.5")  # the report still works
    with clean_db.transaction() as tx:
        messages = [e["message"] for e in tx.all("SELECT message FROM event WHERE kind = 'dns' ORDER BY id")]
    assert any(m.startswith(f"dns: create A web1.{ZONE} failed: DNS Services") and "(internal_error, HTTP 500, trace "
               in m for m in messages), messages
    assert held(fake) == []
    fake.faults.clear()
    resp = dns.post("/reconcile", json={"deployment": "rack1"}, headers=admin)
    assert resp.status_code == 200 and resp.json["failed"] == [] and resp.json["counts"]["applied"] == 3
    assert len(held(fake)) == 3


@pytest.mark.parametrize("lost", [{"status": 502}, {"timeout": 1.5}], ids=["5xx", "timeout"])
def test_a_create_whose_answer_was_lost_is_looked_up_and_adopted_not_sent_again(fake, fleet, config, boot, status,
                                                                               admin, dns, clean_db, settings, lost):
    """The service makes the record, then the answer is lost (a 5xx, or too late for the
    client's timeout). The retry looks at the name first and adopts the record it finds:
    no duplicate, no 409, and no record bootfleet made but does not own (a conflict)."""
    settings(ibm_timeout=1)
    fake.inject("POST", r"/resource_records$", apply=True, **lost)  # the first create: made, answer lost
    ready_node(config, boot, status, admin, "52:54:00:00:00:01", "web1", "10.0.0.5")
    assert held(fake) == [("A", f"api.rack1.{ZONE}", "10.0.0.5"), ("A", f"web1.{ZONE}", "10.0.0.5"),
                          ("PTR", "5.0.0.10.in-addr.arpa", f"web1.{ZONE}")]
    assert fake.calls["POST"] == 3  # the lost create was not sent again
    with clean_db.transaction() as tx:
        owned = {r["provider_id"] for r in tx.all("SELECT provider_id FROM dns_record")}
        assert tx.scalar("SELECT count(*) FROM event WHERE kind = 'error'") == 0
    assert owned == {r["id"] for r in fake.all(ZONE_ID)}
    resp = dns.post("/reconcile", headers=admin)
    assert resp.json["counts"]["unchanged"] == 3 and resp.json["conflicts"] == [] and resp.json["failed"] == []


def test_an_empty_reverse_zone_setting_means_no_ptrs_and_an_ip_outside_it_gets_none(fake, fleet, config, boot,
                                                                                     status, admin, dns, clean_db,
                                                                                     settings):
    """BOOTFLEET_DNS_REVERSE_ZONE says which IPs get PTRs, as with RFC 2136: empty, none
    (the PTRs bootfleet made before go); an IP in none of its zones, none either."""
    ready_node(config, boot, status, admin, "52:54:00:00:00:01", "web1", "10.0.0.5")
    assert ("PTR", "5.0.0.10.in-addr.arpa", f"web1.{ZONE}") in held(fake)
    settings(dns_reverse_zone="")
    resp = dns.post("/reconcile", headers=admin)
    assert [(p["action"], p["type"]) for p in resp.json["applied"]] == [("delete", "PTR")]
    assert [(s["type"], s["reason"]) for s in resp.json["skipped"]] == [
        ("PTR", "no reverse zone holds 10.0.0.5 (BOOTFLEET_DNS_REVERSE_ZONE)")]
    assert held(fake) == [("A", f"api.rack1.{ZONE}", "10.0.0.5"), ("A", f"web1.{ZONE}", "10.0.0.5")]

    settings(dns_reverse_zone="10.10.in-addr.arpa")  # 10.10.x only
    ready_node(config, boot, status, admin, "52:54:00:00:00:02", "web2", "10.10.0.6")
    assert dns.post("/reconcile", headers=admin).json["failed"] == []
    assert [r for r in held(fake) if r[0] == "PTR"] == [("PTR", "6.0.10.10.in-addr.arpa", f"web2.{ZONE}")]


def test_dry_run_writes_nothing(fake, fleet, config, boot, status, admin, dns, clean_db, settings):
    settings(dns_provider="none")
    ready_node(config, boot, status, admin, "52:54:00:00:00:01", "web1", "10.0.0.5")
    settings(dns_provider="ibm")
    before = snapshot(clean_db)
    resp = dns.post("/reconcile", json={"dry_run": True}, headers=admin)
    assert [p["action"] for p in resp.json["plan"]] == ["create", "create", "create"]
    assert resp.json["plan"][-1]["type"] == "PTR"  # PTRs come last: they need their A record
    assert fake.writes == 0 and snapshot(clean_db) == before


def test_a_zone_without_an_id_is_skipped_with_the_setting_to_fix(fake, config, boot, status, admin, dns, clean_db):
    make_profile(config, admin)
    config.post("/api/v1/deployments", headers=admin, json={"name": "other", "profile": "worker",
                                                            "dns_zone": "other.example.org"})
    ready_node(config, boot, status, admin, "52:54:00:00:00:01", "web1", "10.0.0.5", deployment="other")
    resp = dns.post("/reconcile", headers=admin)
    assert resp.json["counts"]["skipped"] == 2
    assert "BOOTFLEET_IBM_DNS_ZONE_ID=other.example.org=<zone id>" in resp.json["skipped"][0]["reason"]
    assert held(fake) == []


def test_the_fake_keeps_the_ptr_rule(fake):
    """What the reconcile's ordering relies on, straight from the SDK."""
    from ibm_cloud_networking_services import DnsSvcsV1
    from ibm_cloud_sdk_core import ApiException
    from ibm_cloud_sdk_core.authenticators import NoAuthAuthenticator

    fake.require_auth = False
    sdk = DnsSvcsV1(authenticator=NoAuthAuthenticator())
    sdk.set_service_url(fake.service_url)
    with pytest.raises(ApiException) as e:
        sdk.create_resource_record(INSTANCE, ZONE_ID, type="PTR", name="10.0.0.5", rdata={"ptrdname": f"w.{ZONE}"})
    assert e.value.status_code == 400 and "needs an existing A" in e.value.message
    created = sdk.create_resource_record(INSTANCE, ZONE_ID, type="A", name="w", rdata={"ip": "10.0.0.5"})
    assert created.get_status_code() == 200  # as the API reference says (not 201)
    a = created.get_result()
    assert a["id"].startswith("A:") and a["name"] == f"w.{ZONE}" and a["ttl"] == 900
    ptr = sdk.create_resource_record(INSTANCE, ZONE_ID, type="PTR", name="10.0.0.5",
                                     rdata={"ptrdname": f"w.{ZONE}"}).get_result()
    assert ptr["name"] == "5.0.0.10.in-addr.arpa" and ptr["id"].startswith("PTR:")
    with pytest.raises(ApiException) as e:
        sdk.delete_resource_record(INSTANCE, ZONE_ID, a["id"])
    assert e.value.status_code == 400 and "PTR" in e.value.message
    page = sdk.list_resource_records(INSTANCE, ZONE_ID, offset=1, limit=1).get_result()
    assert (page["total_count"], page["count"], page["offset"], "previous" in page) == (2, 1, 1, True)


@pytest.mark.parametrize("ptr_names", ["reverse", "ip"])
def test_a_ptr_listed_under_its_ip_or_its_reverse_name_needs_no_change(settings, config, admin, boot, status, dns,
                                                                       clean_db, ptr_names):
    """DNS Services may list a PTR with the IP as its name; bootfleet reads it as the
    reverse name either way, so a no-change reconcile writes nothing."""
    service = FakeDnsServices(INSTANCE, {ZONE_ID: ZONE}, ptr_names=ptr_names).start()
    try:
        settings(dns_provider="ibm", dns_zone=ZONE, ibm_dns_instance_id=INSTANCE, ibm_dns_zone_id=f"{ZONE}={ZONE_ID}",
                 dns_reverse_zone="10.in-addr.arpa", ibmcloud_api_key=API_KEY, ibm_dns_url=service.service_url,
                 ibm_iam_url=service.url)
        make_dns_fleet(config, admin, ZONE)
        node = ready_node(config, boot, status, admin, "52:54:00:00:00:01", "web1", "10.0.0.5")
        listed = service.handle_list_names()
        assert ("10.0.0.5" if ptr_names == "ip" else "5.0.0.10.in-addr.arpa") in listed
        service.reset_counts()
        resp = dns.post("/reconcile", headers=admin)
        assert resp.json["counts"]["unchanged"] == 3 and resp.json["counts"]["applied"] == 0
        resp = dns.post("/reconcile", json={"deployment": "rack1"}, headers=admin)
        assert resp.json["counts"]["applied"] == 0
        assert service.writes == 0
        # and a change still finds the PTR to replace
        config.patch(f"/api/v1/nodes/{node['id']}", json={"ip": "10.0.1.9"}, headers=admin)
        assert sorted(r["rdata"].get("ip") or r["name"] for r in service.all(ZONE_ID)) == [
            "10.0.1.9", "10.0.1.9", "9.1.0.10.in-addr.arpa"]
    finally:
        service.stop()


def test_throttling_and_server_errors_are_retried_through_the_one_client(fake, fleet, config, boot, status, admin,
                                                                         clean_db):
    import requests

    fake.inject("GET", r"/resource_records$", status=429, retry_after=1)
    resp = requests.post(f"{fake.url}/_fake/faults", json={"method": "POST", "path": "/resource_records$",
                                                           "status": 503, "times": 2}, timeout=5)
    assert resp.status_code == 201
    fake.inject("POST", "^/identity/token$", status=500)
    started = time.monotonic()
    ready_node(config, boot, status, admin, "52:54:00:00:00:01", "web1", "10.0.0.5")
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was honoured
    assert len(held(fake)) == 3
    assert [f.hits for f in fake.faults] == [1, 2, 1]
    with clean_db.transaction() as tx:
        assert tx.scalar("SELECT count(*) FROM event WHERE kind = 'error'") == 0
