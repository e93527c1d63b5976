"""DNS planning: what should exist, and only the difference to what does; pure, no I/O.

    desired_records(deployments, nodes, ...)    the records database rows ask for
    diff(desired, found, result)                create / update / delete ops; names held by
                                                records bootfleet did not create are conflicts
    plan_ops(desired, found, result)            the diff in the order to apply it
    repair_rows(found, desired, rows, zones)    the dns_record changes that make the table
                                                follow what the provider holds

Everything here works on plain data (database rows as dicts, provider records as
`Record`/`Found`), so it is tested as tables; `reconcile` does the reading and writing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bootfleet.dns.spec import DnsSpecError, node_fqdn, parse_dns_spec
from bootfleet.providers.dns.base import MANAGED_TYPES, Found, Record, address_type, fqdn, reverse_name


@dataclass(frozen=True)
class Meta:
    node_id: str | None = None
    deployment_id: str | None = None


@dataclass
class Scope:
    deployment_id: str | None = None
    node_id: str | None = None

    def describe(self) -> dict:
        return {k: v for k, v in (("deployment_id", self.deployment_id), ("node_id", self.node_id)) if v} or {"all": True}


@dataclass
class Op:
    action: str  # create, update, delete
    record: Record  # the record wanted (create/update) or removed (delete)
    meta: Meta = field(default_factory=Meta)
    old: Found | None = None  # the record replaced (update) or removed (delete)

    def view(self) -> dict:
        view = {"action": self.action, "zone": self.record.zone, "name": self.record.name,
                "type": self.record.type, "value": self.record.value}
        if self.action == "update" and self.old is not None:
            view["old_value"] = self.old.record.value
        if self.meta.node_id:
            view["node_id"] = self.meta.node_id
        if self.meta.deployment_id:
            view["deployment_id"] = self.meta.deployment_id
        return view

    @property
    def phase(self) -> int:
        """Order for providers that check references: PTRs go first and come back last."""
        if self.action == "delete":
            return 0 if self.record.type == "PTR" else 1
        if self.action == "update":
            return 2
        return 4 if self.record.type == "PTR" else 3


@dataclass
class Result:
    provider: str
    dry_run: bool
    scope: Scope
    plan: list[Op] = field(default_factory=list)
    applied: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    conflicts: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    unchanged: int = 0
    reads: int = 0
    writes: int = 0
    seconds: float = 0.0

    def view(self) -> dict:
        return {
            "provider": self.provider, "dry_run": self.dry_run, "scope": self.scope.describe(),
            "plan": [op.view() for op in self.plan], "applied": self.applied, "failed": self.failed,
            "conflicts": self.conflicts, "skipped": self.skipped,
            "counts": {"planned": len(self.plan), "applied": len(self.applied), "failed": len(self.failed),
                       "conflicts": len(self.conflicts), "skipped": len(self.skipped), "unchanged": self.unchanged},
            "provider_reads": self.reads, "provider_writes": self.writes, "seconds": round(self.seconds, 3),
        }


class Desired:
    def __init__(self):
        self.records: dict[Record, Meta] = {}
        self.skipped: list[dict] = []

    def add(self, record: Record, meta: Meta) -> None:
        self.records.setdefault(record, meta)

    def skip(self, reason: str, **what: Any) -> None:
        self.skipped.append({**{k: v for k, v in what.items() if v is not None}, "reason": reason})


@dataclass(frozen=True)
class RowChange:
    """One dns_record change: `save` (insert or update) or `delete`."""

    action: str
    record: Record
    provider_id: str | None = None
    meta: Meta = field(default_factory=Meta)


# --- what the database says -------------------------------------------------------


def desired_records(deployments: list[dict], nodes: list[dict], default_zone: str | None,
                    ptr_zone: Callable[[str, str], str | None]) -> Desired:
    """The records these rows ask for.

    `nodes`: ready nodes with a hostname and an IP ({id, hostname, ip, labels, deployment_id,
    dns_zone}); `deployments`: active ones ({id, name, dns_zone, spec}); `default_zone`:
    BOOTFLEET_DNS_ZONE; `ptr_zone(ip, forward_zone)`: the reverse zone for an IP, or None.
    """
    desired = Desired()
    by_deployment = defaultdict(list)
    for node in nodes:
        by_deployment[node["deployment_id"]].append(node)
        zone = fqdn(node["dns_zone"] or default_zone or "")
        if not zone:
            desired.skip("no DNS zone: set the deployment's dns_zone or BOOTFLEET_DNS_ZONE", node_id=node["id"])
            continue
        name = node_fqdn(node["hostname"], zone)
        if name is None:
            desired.skip(f"hostname {node['hostname']} is not in zone {zone}", node_id=node["id"])
            continue
        meta = Meta(node["id"], node["deployment_id"])
        desired.add(Record(zone, name, address_type(node["ip"]), node["ip"]), meta)
        reverse_zone = ptr_zone(node["ip"], zone)
        if reverse_zone is None:
            desired.skip(f"no reverse zone holds {node['ip']} (BOOTFLEET_DNS_REVERSE_ZONE)", node_id=node["id"],
                         name=reverse_name(node["ip"]), type="PTR")
        else:
            desired.add(Record(reverse_zone, reverse_name(node["ip"]), "PTR", name), meta)
    for deployment in deployments:
        zone = fqdn(deployment["dns_zone"] or default_zone or "")
        if not zone or not (deployment["spec"] or {}).get("dns"):
            continue
        try:
            entries = parse_dns_spec(deployment["spec"], deployment["name"], zone)
        except DnsSpecError as e:
            desired.skip(f"deployment {deployment['name']}: {e}", deployment_id=deployment["id"])
            continue
        for entry in entries:
            if entry["cname"]:
                desired.add(Record(zone, entry["name"], "CNAME", entry["cname"]), Meta(None, deployment["id"]))
                continue
            for node in by_deployment.get(deployment["id"], []):
                if all((node["labels"] or {}).get(k) == v for k, v in entry["labels"].items()):
                    desired.add(Record(zone, entry["name"], address_type(node["ip"]), node["ip"]),
                                Meta(node["id"], deployment["id"]))
    return desired


# --- the difference ------------------------------------------------------------------


def diff(desired: dict[Record, Meta], found: list[Found], result: Result) -> list[Op]:
    """Only what differs, per name; names held by someone else are conflicts (added to
    `result.conflicts`; `result.unchanged` counts the records already right)."""
    wanted_by_name: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in desired:
        wanted_by_name[(record.zone, record.name)].append(record)
    found_by_name: dict[tuple[str, str], list[Found]] = defaultdict(list)
    for f in found:
        found_by_name[(f.record.zone, f.record.name)].append(f)
    ops: list[Op] = []
    for key in sorted(set(wanted_by_name) | set(found_by_name)):
        wanted = set(wanted_by_name.get(key, []))
        here = found_by_name.get(key, [])
        owned = {f.record: f for f in here if f.owned and f.record.type in MANAGED_TYPES}
        foreign = [f for f in here if not f.owned]
        missing = sorted(wanted - set(owned))
        if foreign and missing:
            held = ", ".join(sorted({f"{f.record.type} {f.record.value}" for f in foreign}))
            for record in missing:
                result.conflicts.append({**Op("create", record, desired[record]).view(),
                                         "reason": f"{record.name} holds records bootfleet did not create: {held}"})
            missing = []
        extra = sorted(set(owned) - wanted)
        result.unchanged += len(wanted & set(owned))
        # a changed value of the same type is one update (a PTR is always delete + create)
        by_type_missing = defaultdict(list)
        for record in missing:
            by_type_missing[record.type].append(record)
        for old in extra:
            candidates = by_type_missing.get(old.type) if old.type != "PTR" else None
            if candidates:
                new = candidates.pop(0)
                ops.append(Op("update", new, desired[new], owned[old]))
            else:
                ops.append(Op("delete", old, Meta(), owned[old]))
        for records in by_type_missing.values():
            ops += [Op("create", r, desired[r]) for r in records]
    # a PTR must not point at a name whose address someone else holds
    held = {c["name"] for c in result.conflicts}
    for op in [op for op in ops if op.action == "create" and op.record.type == "PTR" and op.record.value in held]:
        ops.remove(op)
        result.conflicts.append({**op.view(), "reason": f"{op.record.value} holds records bootfleet did not create"})
    return ops


def plan_ops(desired: dict[Record, Meta], found: list[Found], result: Result) -> list[Op]:
    """`diff` in the order to apply it (see `Op.phase`)."""
    return sorted(diff(desired, found, result), key=lambda op: (op.phase, op.record))


def repair_rows(found: list[Found], desired: dict[Record, Meta], rows: dict[Record, dict],
                zones: set[str]) -> list[RowChange]:
    """dns_record follows what the provider holds: rows for owned records that lack one
    (or carry stale ids), none for records that are gone from `zones`. No provider write."""
    changes = []
    owned = {f.record: f for f in found if f.owned and f.record.type in MANAGED_TYPES}
    for record, f in owned.items():
        row = rows.get(record)
        meta = desired.get(record, Meta(row["node_id"], row["deployment_id"]) if row else Meta())
        if row is None or row["provider_id"] != f.provider_id or (
                record in desired and (row["node_id"], row["deployment_id"]) != (meta.node_id, meta.deployment_id)):
            changes.append(RowChange("save", record, f.provider_id, meta))
    for record in rows:
        if record not in owned and record.zone in zones:
            changes.append(RowChange("delete", record))
    return changes


def applied_rows(op: Op, provider_id: str | None) -> list[RowChange]:
    """The dns_record changes after `op` was applied at the provider."""
    changes = []
    if op.old is not None:
        changes.append(RowChange("delete", op.old.record))
    if op.action != "delete":
        changes.append(RowChange("save", op.record, provider_id, op.meta))
    return changes
