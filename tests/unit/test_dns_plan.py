"""DNS planning as tables: what should exist, the difference to what the provider holds,
and what dns_record keeps. Pure functions over plain data: no database, no provider."""

import pytest

from bootfleet.dns.plan import (
    Desired,
    Meta,
    Op,
    Result,
    RowChange,
    Scope,
    applied_rows,
    desired_records,
    diff,
    plan_ops,
    repair_rows,
)
from bootfleet.providers.dns.base import Found, Record, reverse_name

Z = "fleet.example.com"
REV = "10.in-addr.arpa"


def a(host, ip, zone=Z):
    return Record(zone, f"{host}.{zone}", "A", ip)


def ptr(ip, host):
    return Record(REV, reverse_name(ip), "PTR", f"{host}.{Z}")


def cname(host, target):
    return Record(Z, f"{host}.{Z}", "CNAME", f"{target}.{Z}")


def txt(host, value):
    return Record(Z, f"{host}.{Z}", "TXT", value)


def mine(record, provider_id=None):
    return Found(record, owned=True, provider_id=provider_id)


def theirs(record):
    return Found(record, owned=False)


def ops_of(ops):
    """(action, type, name, value, old value, node_id) per op, sorted."""
    return sorted((op.action, op.record.type, op.record.name, op.record.value,
                   op.old.record.value if op.old else None, op.meta.node_id) for op in ops)


WEB1 = a("web1", "10.0.0.1")
HELD_BY_OTHERS = f"web1.{Z} holds records bootfleet did not create"

# id, desired (record -> node id), found, expected ops, expected conflicts (type, name, value, reason), unchanged
DIFF_CASES = [
    ("no change, no ops",
     {a("web1", "10.0.0.1"): "n1", ptr("10.0.0.1", "web1"): "n1"},
     [mine(a("web1", "10.0.0.1")), mine(ptr("10.0.0.1", "web1"))],
     [], [], 2),
    ("a new node: A and PTR created",
     {a("web1", "10.0.0.1"): "n1", ptr("10.0.0.1", "web1"): "n1"},
     [],
     [("create", "A", f"web1.{Z}", "10.0.0.1", None, "n1"),
      ("create", "PTR", "1.0.0.10.in-addr.arpa", f"web1.{Z}", None, "n1")], [], 0),
    ("a changed IP: the A is updated in place, the PTR moves (delete old name, create new)",
     {a("web1", "10.0.0.2"): "n1", ptr("10.0.0.2", "web1"): "n1"},
     [mine(a("web1", "10.0.0.1")), mine(ptr("10.0.0.1", "web1"))],
     [("create", "PTR", "2.0.0.10.in-addr.arpa", f"web1.{Z}", None, "n1"),
      ("delete", "PTR", "1.0.0.10.in-addr.arpa", f"web1.{Z}", f"web1.{Z}", None),
      ("update", "A", f"web1.{Z}", "10.0.0.2", "10.0.0.1", "n1")], [], 0),
    ("a renamed host: a PTR at the same name is never updated, it is deleted and created",
     {a("web2", "10.0.0.1"): "n1", ptr("10.0.0.1", "web2"): "n1"},
     [mine(a("web1", "10.0.0.1")), mine(ptr("10.0.0.1", "web1"))],
     [("create", "A", f"web2.{Z}", "10.0.0.1", None, "n1"),
      ("create", "PTR", "1.0.0.10.in-addr.arpa", f"web2.{Z}", None, "n1"),
      ("delete", "A", f"web1.{Z}", "10.0.0.1", "10.0.0.1", None),
      ("delete", "PTR", "1.0.0.10.in-addr.arpa", f"web1.{Z}", f"web1.{Z}", None)], [], 0),
    ("an owned record no longer desired is deleted",
     {},
     [mine(a("web1", "10.0.0.1"))],
     [("delete", "A", f"web1.{Z}", "10.0.0.1", "10.0.0.1", None)], [], 0),
    ("a foreign record at a desired name: a conflict, nothing written",
     {a("web1", "10.0.0.1"): "n1"},
     [theirs(a("web1", "192.0.2.9"))],
     [], [("A", f"web1.{Z}", "10.0.0.1", f"{HELD_BY_OTHERS}: A 192.0.2.9")], 0),
    ("a PTR pointing at a name held by others is a conflict too",
     {a("web1", "10.0.0.1"): "n1", ptr("10.0.0.1", "web1"): "n1"},
     [theirs(a("web1", "192.0.2.9")), theirs(txt("web1", "v=spf1"))],
     [], [("A", f"web1.{Z}", "10.0.0.1", f"{HELD_BY_OTHERS}: A 192.0.2.9, TXT v=spf1"),
          ("PTR", "1.0.0.10.in-addr.arpa", f"web1.{Z}", HELD_BY_OTHERS)], 0),
    ("a foreign record beside an owned one that is right: unchanged, no conflict",
     {a("web1", "10.0.0.1"): "n1"},
     [mine(a("web1", "10.0.0.1")), theirs(txt("web1", "hello"))],
     [], [], 1),
    ("a foreign record at a name bootfleet only removes from: the delete goes ahead",
     {},
     [mine(a("web1", "10.0.0.1")), theirs(txt("web1", "hello"))],
     [("delete", "A", f"web1.{Z}", "10.0.0.1", "10.0.0.1", None)], [], 0),
    ("an owned record of an unmanaged type (the owner TXT) is left alone",
     {},
     [mine(txt("web1", "heritage=bootfleet"))],
     [], [], 0),
    ("another type at the name: delete the A, create the CNAME",
     {cname("www", "api"): None},
     [mine(a("www", "10.0.0.1"))],
     [("create", "CNAME", f"www.{Z}", f"api.{Z}", None, None),
      ("delete", "A", f"www.{Z}", "10.0.0.1", "10.0.0.1", None)], [], 0),
    ("a name over two nodes, one changed: one update, one unchanged",
     {a("api", "10.0.0.1"): "n1", a("api", "10.0.0.3"): "n3"},
     [mine(a("api", "10.0.0.1")), mine(a("api", "10.0.0.2"))],
     [("update", "A", f"api.{Z}", "10.0.0.3", "10.0.0.2", "n3")], [], 1),
    ("more owned than wanted of a type: the first is updated, the rest deleted",
     {a("api", "10.0.0.5"): "n5"},
     [mine(a("api", "10.0.0.2")), mine(a("api", "10.0.0.1"))],
     [("delete", "A", f"api.{Z}", "10.0.0.2", "10.0.0.2", None),
      ("update", "A", f"api.{Z}", "10.0.0.5", "10.0.0.1", "n5")], [], 0),
]


@pytest.mark.parametrize("desired,found,ops,conflicts,unchanged", [c[1:] for c in DIFF_CASES],
                         ids=[c[0] for c in DIFF_CASES])
def test_diff(desired, found, ops, conflicts, unchanged):
    result = Result("test", False, Scope())
    planned = diff({r: Meta(node) for r, node in desired.items()}, found, result)
    assert ops_of(planned) == sorted(ops)
    assert sorted((c["type"], c["name"], c["value"], c["reason"]) for c in result.conflicts) == sorted(conflicts)
    assert result.unchanged == unchanged
    for op in planned:  # what is replaced or removed is the provider's record, with its id
        assert (op.old is None) == (op.action == "create")
        assert op.old is None or op.old in found


def test_plan_ops_orders_ptr_deletes_first_and_ptr_creates_last():
    desired = {a("web1", "10.0.0.2"): Meta("n1"), ptr("10.0.0.2", "web1"): Meta("n1"),
               a("web9", "10.0.0.9"): Meta("n9"), ptr("10.0.0.9", "web9"): Meta("n9")}
    found = [mine(a("web1", "10.0.0.1")), mine(ptr("10.0.0.1", "web1")), mine(a("old", "10.0.0.7"))]
    planned = plan_ops(desired, found, Result("test", False, Scope()))
    assert [(op.action, op.record.type, op.record.name) for op in planned] == [
        ("delete", "PTR", "1.0.0.10.in-addr.arpa"),
        ("delete", "A", f"old.{Z}"),
        ("update", "A", f"web1.{Z}"),
        ("create", "A", f"web9.{Z}"),
        ("create", "PTR", "2.0.0.10.in-addr.arpa"),
        ("create", "PTR", "9.0.0.10.in-addr.arpa"),
    ]


@pytest.mark.parametrize("action,record,phase", [
    ("delete", ptr("10.0.0.1", "web1"), 0),
    ("delete", WEB1, 1),
    ("update", WEB1, 2),
    ("create", cname("www", "api"), 3),
    ("create", WEB1, 3),
    ("create", ptr("10.0.0.1", "web1"), 4),
])
def test_op_phase(action, record, phase):
    assert Op(action, record).phase == phase


def test_op_view():
    old = mine(a("web1", "10.0.0.1"), "A:1")
    assert Op("update", a("web1", "10.0.0.2"), Meta("n1", "d1"), old).view() == {
        "action": "update", "zone": Z, "name": f"web1.{Z}", "type": "A", "value": "10.0.0.2",
        "old_value": "10.0.0.1", "node_id": "n1", "deployment_id": "d1"}
    assert Op("delete", a("web1", "10.0.0.1"), Meta(), old).view() == {
        "action": "delete", "zone": Z, "name": f"web1.{Z}", "type": "A", "value": "10.0.0.1"}


# --- what should exist -------------------------------------------------------------------


def node(node_id, hostname, ip, deployment_id=None, zone=None, labels=None):
    return {"id": node_id, "hostname": hostname, "ip": ip, "labels": labels or {},
            "deployment_id": deployment_id, "dns_zone": zone}


def deployment(deployment_id, name, spec, zone=None):
    return {"id": deployment_id, "name": name, "dns_zone": zone, "spec": spec}


def reverse_10(ip, forward_zone):
    return REV if ip.startswith("10.") else None


RACK = deployment("d1", "rack1", {"dns": {"names": ["api", {"name": "db", "labels": {"role": "db"}},
                                                    {"name": "www", "cname": "api"}]}})

# id, deployments, nodes, default zone, expected records (record -> Meta), expected skipped reasons
DESIRED_CASES = [
    ("a node: A and PTR in the default zone",
     [], [node("n1", "web1", "10.0.0.1")], Z,
     {a("web1", "10.0.0.1"): Meta("n1"), ptr("10.0.0.1", "web1"): Meta("n1")}, []),
    ("an IPv6 node: AAAA, and no PTR without a reverse zone",
     [], [node("n1", "web1", "2001:db8::1")], Z,
     {Record(Z, f"web1.{Z}", "AAAA", "2001:db8::1"): Meta("n1")},
     [("n1", "no reverse zone holds 2001:db8::1 (BOOTFLEET_DNS_REVERSE_ZONE)")]),
    ("a full hostname in the zone is used as it is; the deployment's zone wins",
     [], [node("n1", "Web1.Lab.Example.org.", "10.0.0.1", "d1", "lab.example.org")], Z,
     {a("web1", "10.0.0.1", "lab.example.org"): Meta("n1", "d1"),
      Record(REV, "1.0.0.10.in-addr.arpa", "PTR", "web1.lab.example.org"): Meta("n1", "d1")}, []),
    ("no zone anywhere: skipped",
     [], [node("n1", "web1", "10.0.0.1")], None,
     {}, [("n1", "no DNS zone: set the deployment's dns_zone or BOOTFLEET_DNS_ZONE")]),
    ("a hostname in another zone: skipped",
     [], [node("n1", "web1.other.org", "10.0.0.1")], Z,
     {}, [("n1", f"hostname web1.other.org is not in zone {Z}")]),
    ("a deployment's names: over the nodes with the labels, and a CNAME",
     [RACK], [node("n1", "a1", "10.0.0.1", "d1"), node("n2", "b1", "10.0.0.2", "d1", labels={"role": "db"})], Z,
     {a("a1", "10.0.0.1"): Meta("n1", "d1"), ptr("10.0.0.1", "a1"): Meta("n1", "d1"),
      a("b1", "10.0.0.2"): Meta("n2", "d1"), ptr("10.0.0.2", "b1"): Meta("n2", "d1"),
      a("api.rack1", "10.0.0.1"): Meta("n1", "d1"), a("api.rack1", "10.0.0.2"): Meta("n2", "d1"),
      a("db.rack1", "10.0.0.2"): Meta("n2", "d1"),
      Record(Z, f"www.rack1.{Z}", "CNAME", f"api.rack1.{Z}"): Meta(None, "d1")}, []),
    ("a deployment whose spec is unusable: skipped with the reason",
     [deployment("d1", "rack1", {"dns": {"names": [{"name": "x", "ttl": 5}]}})], [], Z,
     {}, [("d1", "deployment rack1: spec.dns.names[0]: unknown field(s) ttl")]),
    ("a deployment without spec.dns asks for nothing",
     [deployment("d1", "rack1", {"other": 1})], [], Z, {}, []),
    ("an empty spec.dns is no spec at all (not an error)",
     [deployment("d1", "rack1", {"dns": []})], [], Z, {}, []),
    ("a deployment without a zone asks for nothing",
     [RACK], [], None, {}, []),
]


@pytest.mark.parametrize("deployments,nodes,zone,records,skipped", [c[1:] for c in DESIRED_CASES],
                         ids=[c[0] for c in DESIRED_CASES])
def test_desired_records(deployments, nodes, zone, records, skipped):
    desired = desired_records(deployments, nodes, zone, reverse_10)
    assert desired.records == records
    assert [(s.get("node_id") or s.get("deployment_id"), s["reason"]) for s in desired.skipped] == skipped


def test_desired_keeps_the_first_owner_of_a_record():
    desired = Desired()
    desired.add(a("api", "10.0.0.1"), Meta("n1"))
    desired.add(a("api", "10.0.0.1"), Meta("n2"))
    assert desired.records == {a("api", "10.0.0.1"): Meta("n1")}


# --- what dns_record keeps ----------------------------------------------------------------


def row(record, provider_id=None, node_id=None, deployment_id=None):
    return {"zone": record.zone, "name": record.name, "type": record.type, "value": record.value,
            "provider_id": provider_id, "node_id": node_id, "deployment_id": deployment_id}


OTHER_ZONE = a("web1", "10.0.0.1", "lab.example.org")

# id, found, desired, rows, listed zones, expected changes
REPAIR_CASES = [
    ("row and provider agree: nothing",
     [mine(WEB1, "A:1")], {WEB1: Meta("n1")}, [row(WEB1, "A:1", "n1")], {Z}, []),
    ("an owned record without a row gets one",
     [mine(WEB1, "A:1")], {WEB1: Meta("n1", "d1")}, [], {Z}, [RowChange("save", WEB1, "A:1", Meta("n1", "d1"))]),
    ("a stale provider id is replaced, the row's owners kept when not desired",
     [mine(WEB1, "A:2")], {}, [row(WEB1, "A:1", "n1", "d1")], {Z},
     [RowChange("save", WEB1, "A:2", Meta("n1", "d1"))]),
    ("a desired record's owners follow the desired ones",
     [mine(WEB1, "A:1")], {WEB1: Meta("n2")}, [row(WEB1, "A:1", "n1")], {Z},
     [RowChange("save", WEB1, "A:1", Meta("n2"))]),
    ("a row whose record is gone from a listed zone is deleted",
     [], {}, [row(WEB1, "A:1", "n1")], {Z}, [RowChange("delete", WEB1)]),
    ("a row in a zone not listed (unreadable) is kept",
     [], {}, [row(OTHER_ZONE, "A:1", "n1")], {Z}, []),
    ("a foreign record never gets a row",
     [theirs(WEB1)], {WEB1: Meta("n1")}, [], {Z}, []),
]


@pytest.mark.parametrize("found,desired,rows,zones,changes", [c[1:] for c in REPAIR_CASES],
                         ids=[c[0] for c in REPAIR_CASES])
def test_repair_rows(found, desired, rows, zones, changes):
    by_record = {Record(r["zone"], r["name"], r["type"], r["value"]): r for r in rows}
    assert repair_rows(found, desired, by_record, zones) == changes


@pytest.mark.parametrize("op,provider_id,changes", [
    (Op("create", WEB1, Meta("n1")), "A:1", [RowChange("save", WEB1, "A:1", Meta("n1"))]),
    (Op("update", a("web1", "10.0.0.2"), Meta("n1"), mine(WEB1, "A:1")), "A:2",
     [RowChange("delete", WEB1), RowChange("save", a("web1", "10.0.0.2"), "A:2", Meta("n1"))]),
    (Op("delete", WEB1, Meta(), mine(WEB1, "A:1")), None, [RowChange("delete", WEB1)]),
], ids=["create", "update", "delete"])
def test_applied_rows(op, provider_id, changes):
    assert applied_rows(op, provider_id) == changes
