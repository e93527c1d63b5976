"""DNS reconcile: the records the database says should exist, made so at the provider.

    desired   each ready node with a hostname and an IP: A (AAAA) + PTR;
              each name in an active deployment's spec (`spec.dns.names`) over its
              ready nodes, e.g. api.<deployment>.<zone>
    found     what the provider holds at those names (and, for a full run, every
              record bootfleet owns in the zones involved)
    plan      only the difference: create, update, delete; a desired record whose name
              holds a record bootfleet did not create is a conflict and is left alone
    apply     one write per changed record (RFC 2136: one UPDATE per changed name);
              a failed write becomes an event and the next reconcile tries again

`dns_record` keeps what bootfleet owns (with the provider's record id).
Scopes: everything, one deployment, or one node (what status and the node API call
right after a node becomes ready or its IP changes).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from bootfleet.db import events, get_database
from bootfleet.db.connection import Database, Transaction
from bootfleet.providers.dns.base import (
    MANAGED_TYPES,
    DnsProvider,
    DnsProviderError,
    Found,
    Record,
    address_type,
    fqdn,
    reverse_name,
)
from bootfleet.providers.dns.choose import make_provider
from bootfleet.settings import Settings, get_settings
from bootfleet.validation import HOSTNAME_RE, LABEL_KEY_RE

log = logging.getLogger(__name__)

TARGETED_MAX_NAMES = 25  # up to this many names are looked up one by one; more read the whole zone
FLUSH_EVERY = 200  # dns_record rows written after this many provider writes


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


class DnsSpecError(ValueError):
    """A deployment's `spec.dns` is not usable; the message says what to fix."""


# --- what the database says -------------------------------------------------------


def node_fqdn(hostname: str, zone: str) -> str | None:
    hostname = fqdn(hostname)
    if hostname == zone or hostname.endswith("." + zone):
        return hostname
    if "." in hostname:
        return None  # a full name in another zone
    return f"{hostname}.{zone}"


def parse_dns_spec(spec: dict, deployment: str, zone: str) -> list[dict]:
    """`spec.dns.names` as a list of {name, type?, labels?, cname?}; raises DnsSpecError."""
    dns_spec = (spec or {}).get("dns")
    if dns_spec is None:
        return []
    if not isinstance(dns_spec, dict) or not isinstance(dns_spec.get("names", []), list):
        raise DnsSpecError("spec.dns must be an object with a list `names`")
    entries = []
    for i, item in enumerate(dns_spec.get("names", [])):
        where = f"spec.dns.names[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise DnsSpecError(f"{where}: a name, or an object with `name` (and `labels` or `cname`)")
        unknown = set(item) - {"name", "labels", "cname"}
        if unknown:
            raise DnsSpecError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        name = f"{fqdn(item['name'])}.{deployment}.{zone}"
        if not HOSTNAME_RE.match(name):
            raise DnsSpecError(f"{where}: {item['name']!r} does not make a DNS name")
        labels = item.get("labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(k, str) and LABEL_KEY_RE.match(k) and isinstance(v, str)
                                                   for k, v in labels.items()):
            raise DnsSpecError(f"{where}.labels: an object of label keys and string values")
        cname = item.get("cname")
        if cname is not None:
            if not isinstance(cname, str) or labels:
                raise DnsSpecError(f"{where}.cname: a DNS name, and no labels with it")
            target = fqdn(cname) if "." in cname else f"{fqdn(cname)}.{deployment}.{zone}"
            if not HOSTNAME_RE.match(target):
                raise DnsSpecError(f"{where}.cname: {cname!r} is not a DNS name")
            cname = target
        entries.append({"name": name, "labels": labels, "cname": cname})
    return entries


class Desired:
    def __init__(self):
        self.records: dict[Record, Meta] = {}
        self.skipped: list[dict] = []

    def add(self, record: Record, meta: Meta) -> None:
        self.records.setdefault(record, meta)

    def skip(self, reason: str, **what: Any) -> None:
        self.skipped.append({**{k: v for k, v in what.items() if v is not None}, "reason": reason})


def desired_records(tx: Transaction, settings: Settings, provider: DnsProvider, scope: Scope) -> Desired:
    desired = Desired()
    where, params = ["d.state = 'active'"], {}
    if scope.deployment_id:
        where.append("d.id = :deployment_id")
        params["deployment_id"] = scope.deployment_id
    if scope.node_id and not scope.deployment_id:
        where.append("false")  # a node outside any deployment: only its own records
    deployments = tx.all(f"SELECT id, name, dns_zone, spec FROM deployment d WHERE {' AND '.join(where)}", **params)
    node_where, node_params = ["n.stage = 'ready'", "n.hostname IS NOT NULL", "n.ip IS NOT NULL",
                               "(d.id IS NULL OR d.state = 'active')"], {}
    if scope.node_id and not scope.deployment_id:
        node_where.append("n.id = :node_id")
        node_params["node_id"] = scope.node_id
    if scope.deployment_id:
        node_where.append("n.deployment_id = :deployment_id")
        node_params["deployment_id"] = scope.deployment_id
    nodes = tx.all(
        "SELECT n.id, n.hostname, n.ip, n.labels, n.deployment_id, d.dns_zone FROM node n"
        f" LEFT JOIN deployment d ON d.id = n.deployment_id WHERE {' AND '.join(node_where)} ORDER BY n.id",
        **node_params,
    )
    by_deployment = defaultdict(list)
    for node in nodes:
        by_deployment[node["deployment_id"]].append(node)
        zone = fqdn(node["dns_zone"] or settings.dns_zone or "")
        if not zone:
            desired.skip("no DNS zone: set the deployment's dns_zone or BOOTFLEET_DNS_ZONE", node_id=node["id"])
            continue
        name = node_fqdn(node["hostname"], zone)
        if name is None:
            desired.skip(f"hostname {node['hostname']} is not in zone {zone}", node_id=node["id"])
            continue
        meta = Meta(node["id"], node["deployment_id"])
        desired.add(Record(zone, name, address_type(node["ip"]), node["ip"]), meta)
        ptr_zone = provider.ptr_zone(node["ip"], zone)
        if ptr_zone is None:
            desired.skip(f"no reverse zone holds {node['ip']} (BOOTFLEET_DNS_REVERSE_ZONE)", node_id=node["id"],
                         name=reverse_name(node["ip"]), type="PTR")
        else:
            desired.add(Record(ptr_zone, reverse_name(node["ip"]), "PTR", name), meta)
    for deployment in deployments:
        zone = fqdn(deployment["dns_zone"] or settings.dns_zone or "")
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


def owned_rows(tx: Transaction, scope: Scope, names: set[str] | None) -> list[dict]:
    where, params = [], {}
    if names is not None:
        where.append("name = ANY(:names)")
        params["names"] = sorted(names)
    elif scope.deployment_id:
        where.append("deployment_id = :deployment_id")
        params["deployment_id"] = scope.deployment_id
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    return tx.all(f"SELECT * FROM dns_record {clause} ORDER BY id", **params)


# --- the difference ------------------------------------------------------------------


def diff(desired: dict[Record, Meta], found: list[Found], result: Result) -> list[Op]:
    """Only what differs, per name; names held by someone else are conflicts."""
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


# --- running it -------------------------------------------------------------------


class _Rows:
    """dns_record changes, written in batches (or in the caller's transaction)."""

    def __init__(self, db: Database | None, tx: Transaction | None):
        self.db, self.tx = db, tx
        self.pending: list[tuple] = []

    def upsert(self, record: Record, provider_id: str | None, meta: Meta) -> None:
        self.pending.append(("upsert", record, provider_id, meta))

    def delete(self, record: Record) -> None:
        self.pending.append(("delete", record))

    def flush(self) -> None:
        if not self.pending:
            return
        if self.tx is not None:
            self._write(self.tx)
        else:
            with self.db.transaction() as tx:
                self._write(tx)
        self.pending = []

    def _write(self, tx: Transaction) -> None:
        for change in self.pending:
            record = change[1]
            keys = {"zone": record.zone, "name": record.name, "type": record.type, "value": record.value}
            if change[0] == "delete":
                tx.run("DELETE FROM dns_record WHERE zone = :zone AND name = :name AND type = :type AND value = :value",
                       **keys)
            else:
                tx.run(
                    "INSERT INTO dns_record (zone, name, type, value, provider_id, node_id, deployment_id)"
                    " VALUES (:zone, :name, :type, :value, :provider_id, :node_id, :deployment_id)"
                    " ON CONFLICT (zone, name, type, value) DO UPDATE SET provider_id = EXCLUDED.provider_id,"
                    " node_id = EXCLUDED.node_id, deployment_id = EXCLUDED.deployment_id, updated_at = now()",
                    provider_id=change[2], node_id=change[3].node_id, deployment_id=change[3].deployment_id, **keys,
                )


def _in_tx(db: Database | None, tx: Transaction | None, fn):
    if tx is not None:
        return fn(tx)
    with db.transaction() as own:
        return fn(own)


def reconcile(scope: Scope | None = None, dry_run: bool = False, tx: Transaction | None = None,
              settings: Settings | None = None, provider: DnsProvider | None = None, source: str = "dns") -> Result:
    """Make the provider match the database within `scope`. With `tx`, everything runs in
    the caller's transaction (status and the node API after a change)."""
    started = time.monotonic()
    settings = settings or get_settings()
    scope = scope or Scope()
    db = None if tx is not None else get_database()
    if provider is None:
        owned_ids = None
        if settings.dns_provider == "ibm":
            rows = _in_tx(db, tx, lambda t: t.all("SELECT provider_id FROM dns_record WHERE provider_id IS NOT NULL"))
            owned_ids = {r["provider_id"] for r in rows}
        provider = make_provider(settings, owned_ids)
    if provider is None:
        raise DnsProviderError("no DNS provider: set BOOTFLEET_DNS_PROVIDER to ibm or rfc2136")
    result = Result(provider.kind, dry_run, scope)

    def read(t: Transaction):
        names = None
        if scope.node_id:
            # only the node's deployment (or the node alone) can change with it
            node = t.one("SELECT deployment_id FROM node WHERE id = :id", id=scope.node_id)
            deployment_id = node["deployment_id"] if node else None
            inner = Scope(deployment_id=deployment_id, node_id=None if deployment_id else scope.node_id)
            desired = desired_records(t, settings, provider, inner)
        else:
            desired = desired_records(t, settings, provider, scope)
        if scope.node_id:
            names = _node_names(t, settings, provider, scope.node_id, desired)
            desired.records = {r: m for r, m in desired.records.items() if r.name in names}
            desired.skipped = [s for s in desired.skipped if s.get("node_id") == scope.node_id]
        rows = owned_rows(t, scope, names)
        return desired, names, rows

    desired, names, rows = _in_tx(db, tx, read)
    if scope.deployment_id and names is None:
        names = {r.name for r in desired.records} | {r["name"] for r in rows}
    result.skipped = desired.skipped

    zones = sorted({r.zone for r in desired.records} | {r["zone"] for r in rows})
    found: list[Found] = []
    for zone in zones:
        problem = provider.zone_problem(zone)
        if problem:
            for record in [r for r in desired.records if r.zone == zone]:
                result.skipped.append({**Op("create", record, desired.records[record]).view(), "reason": problem})
            desired.records = {r: m for r, m in desired.records.items() if r.zone != zone}
            continue
        zone_names = None if names is None else (
            {r.name for r in desired.records if r.zone == zone} | {r["name"] for r in rows if r["zone"] == zone})
        if zone_names is not None and not zone_names:
            continue
        try:
            if zone_names is not None and len(zone_names) > TARGETED_MAX_NAMES:
                here = [f for f in provider.records(zone) if f.record.name in zone_names]
            else:
                here = provider.records(zone, zone_names)
        except DnsProviderError as e:
            # nothing in this zone can be judged; say so and leave it for the next run
            result.failed.append({"zone": zone, "action": "read", "error": str(e)})
            desired.records = {r: m for r, m in desired.records.items() if r.zone != zone}
            continue
        found += here
    listed_zones = {f.record.zone for f in found} | {r.zone for r in desired.records}
    row_by_record = {Record(r["zone"], r["name"], r["type"], r["value"]): r for r in rows}

    result.plan = sorted(diff(desired.records, found, result), key=lambda op: (op.phase, op.record))
    result.reads = provider.counters.reads
    if not dry_run:
        writer = _Rows(db, tx)
        _repair_rows(found, desired.records, row_by_record, listed_zones, writer)
        _apply(provider, result, found, writer)
        writer.flush()
        _record_events(db, tx, result, source)
    result.reads = provider.counters.reads
    result.writes = provider.counters.writes
    result.seconds = time.monotonic() - started
    log.info("dns reconcile", extra={"scope": scope.describe(), "planned": len(result.plan),
                                     "applied": len(result.applied), "failed": len(result.failed),
                                     "writes": result.writes, "seconds": round(result.seconds, 3)})
    return result


def _node_names(tx: Transaction, settings: Settings, provider: DnsProvider, node_id: str, desired: Desired) -> set[str]:
    """The names a node's change can touch: its own, its deployment's, and those it had."""
    names = {r["name"] for r in tx.all("SELECT name FROM dns_record WHERE node_id = :id", id=node_id)}
    names |= {r.name for r, m in desired.records.items() if m.node_id == node_id}
    node = tx.one("SELECT n.deployment_id, d.name, d.dns_zone, d.spec FROM node n"
                  " LEFT JOIN deployment d ON d.id = n.deployment_id WHERE n.id = :id", id=node_id)
    if node and node["deployment_id"]:
        zone = fqdn(node["dns_zone"] or settings.dns_zone or "")
        try:
            names |= {e["name"] for e in parse_dns_spec(node["spec"], node["name"], zone)} if zone else set()
        except DnsSpecError:
            pass
        names |= {r["name"] for r in tx.all("SELECT DISTINCT name FROM dns_record WHERE deployment_id = :d AND"
                                            " node_id IS NULL", d=node["deployment_id"])}
    return names


def _repair_rows(found: list[Found], desired: dict[Record, Meta], rows: dict[Record, dict], zones: set[str],
                 writer: _Rows) -> None:
    """dns_record follows what the provider holds: rows for owned records that lack one
    (or carry stale ids), none for records that are gone. No provider write."""
    owned = {f.record: f for f in found if f.owned and f.record.type in MANAGED_TYPES}
    for record, f in owned.items():
        row = rows.get(record)
        meta = desired.get(record, Meta(row["node_id"], row["deployment_id"]) if row else Meta())
        if row is None or row["provider_id"] != f.provider_id or (
                record in desired and (row["node_id"], row["deployment_id"]) != (meta.node_id, meta.deployment_id)):
            writer.upsert(record, f.provider_id, meta)
    for record in rows:
        if record not in owned and record.zone in zones:
            writer.delete(record)


def _apply(provider: DnsProvider, result: Result, found: list[Found], writer: _Rows) -> None:
    if provider.batches_by_name:
        groups: dict[tuple[str, str], list[Op]] = defaultdict(list)
        for op in result.plan:
            groups[(op.record.zone, op.record.name)].append(op)
        owned_at = defaultdict(int)
        for f in found:
            if f.owned and f.record.type in MANAGED_TYPES:
                owned_at[(f.record.zone, f.record.name)] += 1
        for (zone, name), ops in groups.items():
            deletes = [op.old for op in ops if op.old is not None]
            creates = [op.record for op in ops if op.action != "delete"]
            before = owned_at[(zone, name)]
            try:
                ids = provider.change_name(zone, name, deletes, creates, owned_before=before > 0,
                                           left_after=before - len(deletes) + len(creates))
            except DnsProviderError as e:
                result.failed += [{**op.view(), "error": str(e)} for op in ops]
                continue
            for op in ops:
                _done(op, ids.get(op.record) if op.action != "delete" else None, result, writer)
    else:
        for op in result.plan:
            try:
                if op.action == "create":
                    provider_id = provider.create(op.record)
                elif op.action == "update":
                    provider_id = provider.update(op.old, op.record)
                else:
                    provider.delete(op.old)
                    provider_id = None
            except DnsProviderError as e:
                result.failed.append({**op.view(), "error": str(e)})
                continue
            _done(op, provider_id, result, writer)


def _done(op: Op, provider_id: str | None, result: Result, writer: _Rows) -> None:
    result.applied.append(op.view())
    if op.old is not None:
        writer.delete(op.old.record)
    if op.action != "delete":
        writer.upsert(op.record, provider_id, op.meta)
    if len(writer.pending) >= FLUSH_EVERY:
        writer.flush()


def _record_events(db: Database | None, tx: Transaction | None, result: Result, source: str) -> None:
    per_node = result.scope.node_id is not None
    if not (result.applied or result.failed or (per_node and result.conflicts)):
        return

    def write(t: Transaction) -> None:
        for item in result.failed:
            what = f"{item['action']} {item.get('type', '')} {item.get('name', item.get('zone'))}".replace("  ", " ")
            events.add(t, "dns", f"dns: {what} failed: {item['error']}", source,
                            node_id=item.get("node_id"), deployment_id=item.get("deployment_id"))
        if per_node:
            for item in result.conflicts:
                events.add(t, "dns", f"dns: {item['type']} {item['name']} not created: {item['reason']}", source,
                                node_id=item.get("node_id"), deployment_id=item.get("deployment_id"))
        counts = defaultdict(int)
        for item in result.applied:
            counts[item["action"]] += 1
        summary = ", ".join(f"{counts[a]} {a}d" for a in ("create", "update", "delete") if counts[a])
        events.add(
            t, "dns", f"dns reconcile: {summary or 'nothing applied'}; {len(result.failed)} failed,"
            f" {len(result.conflicts)} conflicts", source,
            node_id=result.scope.node_id, deployment_id=result.scope.deployment_id,
        )

    _in_tx(db, tx, write)


# --- the trigger after a node changes --------------------------------------------


def node_changed(tx: Transaction, node_id: str, source: str) -> Result | None:
    """Bring one node's records (and its deployment's names) up to date right away, in
    the caller's transaction. A DNS failure never fails the caller: it becomes an event."""
    settings = get_settings()
    if settings.dns_provider == "none":
        return None
    tx.run("SAVEPOINT dns_node_changed")
    try:
        result = reconcile(Scope(node_id=node_id), tx=tx, settings=settings, source=source)
        tx.run("RELEASE SAVEPOINT dns_node_changed")
        return result
    except Exception as e:  # noqa: BLE001 - the node's report must not fail because of DNS
        tx.run("ROLLBACK TO SAVEPOINT dns_node_changed")
        log.warning("dns update after node change failed: %s", e, extra={"node_id": node_id})
        events.add(tx, "dns", f"dns: records not updated: {e}; the next reconcile retries", source,
                        node_id=node_id)
        return None


def records_view(tx: Transaction, deployment_id: str | None, limit: int, offset: int) -> tuple[list[dict], int]:
    where, params = ("WHERE deployment_id = :d", {"d": deployment_id}) if deployment_id else ("", {})
    total = tx.scalar(f"SELECT count(*) FROM dns_record {where}", **params)
    items = tx.all(
        "SELECT zone, name, type, value, provider_id, node_id, deployment_id, created_at, updated_at"
        f" FROM dns_record {where} ORDER BY zone, name, type, value LIMIT :limit OFFSET :offset",
        limit=limit, offset=offset, **params,
    )
    return items, total
