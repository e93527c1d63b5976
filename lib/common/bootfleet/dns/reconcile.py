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

This module reads and writes (the database through `bootfleet.db.dns_records`, the
provider, events); what to change is decided in `bootfleet.dns.plan`, and a deployment's
`spec.dns` is read by `bootfleet.dns.spec`.

`dns_record` keeps what bootfleet owns (with the provider's record id).
Scopes: everything, one deployment, or one node (what status and the node API call
right after a node becomes ready or its IP changes).

    reconcile_records(settings, scope, dry_run, ...)   one run
    node_changed(tx, settings, node_id, source)        the run after a node changed
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TypeVar

from bootfleet import metrics
from bootfleet.db import dns_records, events, get_database
from bootfleet.db.connection import Database, Transaction
from bootfleet.dns.plan import (
    Desired,
    Op,
    Result,
    RowChange,
    Scope,
    applied_rows,
    desired_records,
    plan_ops,
    repair_rows,
)
from bootfleet.dns.spec import spec_names
from bootfleet.providers.dns.base import MANAGED_TYPES, DnsProvider, DnsProviderError, Found, Record, fqdn
from bootfleet.providers.dns.choose import make_provider
from bootfleet.settings import Settings

log = logging.getLogger(__name__)

TARGETED_MAX_NAMES = 25  # up to this many names are looked up one by one; more read the whole zone
FLUSH_EVERY = 200  # dns_record rows written after this many provider writes

T = TypeVar("T")


# --- running it -------------------------------------------------------------------


def reconcile_records(settings: Settings, scope: Scope | None = None, dry_run: bool = False,
                      tx: Transaction | None = None, provider: DnsProvider | None = None, source: str = "dns",
                      database: Database | None = None) -> Result:
    """Make the provider match the database within `scope`. With `tx`, everything runs in
    the caller's transaction (status and the node API after a change); without, in
    transactions of `database` (the process's database if None)."""
    started = time.monotonic()
    scope = scope or Scope()
    db = None if tx is not None else (database or get_database())
    if provider is None:
        owned_ids = None
        if settings.dns_provider == "ibm":
            owned_ids = _in_tx(db, tx, dns_records.provider_ids)
        provider = make_provider(settings, owned_ids)
    if provider is None:
        raise DnsProviderError("no DNS provider: set BOOTFLEET_DNS_PROVIDER to ibm or rfc2136")
    result = Result(provider.kind, dry_run, scope)

    desired, names, rows = _in_tx(db, tx, lambda t: _read(t, settings, provider, scope))
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
            metrics.dns_call(provider.kind, "read", "error")
            # nothing in this zone can be judged; say so and leave it for the next run
            result.failed.append({"zone": zone, "action": "read", "error": str(e)})
            desired.records = {r: m for r, m in desired.records.items() if r.zone != zone}
            continue
        metrics.dns_call(provider.kind, "read", "ok")
        found += here
    listed_zones = {f.record.zone for f in found} | {r.zone for r in desired.records}
    row_by_record = {Record(r["zone"], r["name"], r["type"], r["value"]): r for r in rows}

    result.plan = plan_ops(desired.records, found, result)
    result.reads = provider.counters.reads
    if not dry_run:
        writer = _Rows(db, tx)
        writer.add(repair_rows(found, desired.records, row_by_record, listed_zones))
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


def _in_tx(db: Database | None, tx: Transaction | None, fn: Callable[[Transaction], T]) -> T:
    if tx is not None:
        return fn(tx)
    with db.transaction() as own:
        return fn(own)


def _read(tx: Transaction, settings: Settings, provider: DnsProvider,
          scope: Scope) -> tuple[Desired, set[str] | None, list[dict]]:
    """The desired records, the names the run is limited to (None: whole zones) and the owned rows."""
    names = None
    if scope.node_id:
        # only the node's deployment (or the node alone) can change with it
        node = dns_records.node_deployment(tx, scope.node_id)
        deployment_id = node["deployment_id"] if node else None
        inner = Scope(deployment_id=deployment_id, node_id=None if deployment_id else scope.node_id)
        desired = _desired(tx, settings, provider, inner)
        names = _node_names(tx, settings, node, scope.node_id, desired)
        desired.records = {r: m for r, m in desired.records.items() if r.name in names}
        desired.skipped = [s for s in desired.skipped if s.get("node_id") == scope.node_id]
    else:
        desired = _desired(tx, settings, provider, scope)
    rows = dns_records.owned(tx, names=names, deployment_id=scope.deployment_id if names is None else None)
    return desired, names, rows


def _desired(tx: Transaction, settings: Settings, provider: DnsProvider, scope: Scope) -> Desired:
    node_only = bool(scope.node_id and not scope.deployment_id)  # a node outside any deployment: its own records
    deployments = [] if node_only else dns_records.active_deployments(tx, scope.deployment_id)
    nodes = dns_records.ready_nodes(tx, deployment_id=scope.deployment_id,
                                    node_id=scope.node_id if node_only else None)
    return desired_records(deployments, nodes, settings.dns_zone, provider.ptr_zone)


def _node_names(tx: Transaction, settings: Settings, node: dict | None, node_id: str, desired: Desired) -> set[str]:
    """The names a node's change can touch: its own, its deployment's, and those it had.
    `node`: its deployment (`dns_records.node_deployment`)."""
    names = dns_records.node_names(tx, node_id)
    names |= {r.name for r, m in desired.records.items() if m.node_id == node_id}
    if node and node["deployment_id"]:
        zone = fqdn(node["dns_zone"] or settings.dns_zone or "")
        names |= spec_names(node["spec"], node["name"], zone)
        names |= dns_records.deployment_names(tx, node["deployment_id"])
    return names


class _Rows:
    """dns_record changes, written in batches (or in the caller's transaction)."""

    def __init__(self, db: Database | None, tx: Transaction | None):
        self.db, self.tx = db, tx
        self.pending: list[RowChange] = []

    def add(self, changes: list[RowChange]) -> None:
        self.pending += changes

    def flush(self) -> None:
        if not self.pending:
            return
        _in_tx(self.db, self.tx, self._write)
        self.pending = []

    def _write(self, tx: Transaction) -> None:
        for change in self.pending:
            if change.action == "delete":
                dns_records.delete(tx, change.record)
            else:
                dns_records.save(tx, change.record, change.provider_id, change.meta.node_id,
                                 change.meta.deployment_id)


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
                metrics.dns_call(provider.kind, "change", "error")
                result.failed += [{**op.view(), "error": str(e)} for op in ops]
                continue
            metrics.dns_call(provider.kind, "change", "ok")
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
                metrics.dns_call(provider.kind, op.action, "error")
                result.failed.append({**op.view(), "error": str(e)})
                continue
            metrics.dns_call(provider.kind, op.action, "ok")
            _done(op, provider_id, result, writer)


def _done(op: Op, provider_id: str | None, result: Result, writer: _Rows) -> None:
    result.applied.append(op.view())
    writer.add(applied_rows(op, provider_id))
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


def node_changed(tx: Transaction, settings: Settings, node_id: str, source: str) -> Result | None:
    """Bring one node's records (and its deployment's names) up to date right away, in
    the caller's transaction. A DNS failure never fails the caller: it becomes an event."""
    if settings.dns_provider == "none":
        return None
    try:
        with dns_records.savepoint(tx, "dns_node_changed"):
            return reconcile_records(settings, Scope(node_id=node_id), tx=tx, source=source)
    except Exception as e:  # noqa: BLE001 - the node's report must not fail because of DNS
        log.warning("dns update after node change failed: %s", e, extra={"node_id": node_id})
        events.add(tx, "dns", f"dns: records not updated: {e}; the next reconcile retries", source,
                   node_id=node_id)
        return None
