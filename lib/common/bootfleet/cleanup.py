"""One cleanup run: time out stuck nodes, tear down what was deleted, remove owned
orphans, prune old history.

Safe by construction:
- one run at a time (a PostgreSQL advisory lock; an overlapping run is refused);
- `dry_run` computes the same plan and changes nothing;
- at most `cap` deletions of servers, DNS records and deployments per run; past
  it the run stops and says so (the next run goes on);
- only what bootfleet owns is ever touched (providers list owned resources only);
- every action is an event; a failure on one item is recorded and the run goes on.
"""

from __future__ import annotations

import datetime
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from bootfleet import notify
from bootfleet.db import audit, deployments, events, nodes
from bootfleet.db import webhooks as webhook_rows
from bootfleet.db.connection import Database, utcnow
from bootfleet.dns.reconcile import reconcile_records
from bootfleet.errors import ConflictError, DatabaseUnavailableError
from bootfleet.providers.dns.base import DnsProvider, DnsProviderError
from bootfleet.providers.vpc.base import Server
from bootfleet.provision import provisioner
from bootfleet.settings import Settings

log = logging.getLogger(__name__)

LOCK_NAME = "bootfleet-cleanup"
SOURCE = "cleanup"
PRUNE_BATCH = 5000
MAX_LISTED = 1000  # actions listed in a run's answer; `counts` has them all


class ServerProvider(Protocol):
    """What cleanup needs from a VPC provider."""

    def list_owned(self) -> list[Server]: ...

    def delete(self, instance_id: str) -> None: ...


class CleanupBusyError(ConflictError):
    """Another cleanup run holds the lock."""


@dataclass
class Report:
    dry_run: bool
    actions: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    deletions: int = 0
    total_actions: int = 0
    capped: bool = False
    started: float = field(default_factory=time.monotonic)

    def add(self, action: str, **details: Any) -> None:
        self.total_actions += 1
        if len(self.actions) < MAX_LISTED:
            self.actions.append({"action": action, **details})
        self.counts[action] = self.counts.get(action, 0) + 1

    def error(self, action: str, message: str, **details: Any) -> None:
        self.errors.append({"action": action, "error": message, **details})

    def summary(self) -> dict:
        message = (
            f"stopped after {self.deletions} deletions (the cap); the next run goes on" if self.capped else "done"
        )
        return {
            "dry_run": self.dry_run,
            "counts": self.counts,
            "deletions": self.deletions,
            "capped": self.capped,
            "message": message,
            "errors": self.errors,
            "actions": self.actions,
            "actions_listed": f"{len(self.actions)} of {self.total_actions}",
            "duration_s": round(time.monotonic() - self.started, 3),
        }


class Cleanup:
    """One run. Its limits come from the settings: BOOTFLEET_CLEANUP_CAP, BOOTFLEET_CLEANUP_GRACE,
    BOOTFLEET_RETENTION_DAYS, BOOTFLEET_STAGE_TIMEOUTS."""

    def __init__(self, database: Database, settings: Settings, servers: ServerProvider | None = None,
                 dns: DnsProvider | None = None, dry_run: bool = False):
        self.db = database
        self.settings = settings
        self.dry_run = dry_run
        self.servers = servers
        self.dns = dns
        self.report = Report(dry_run)

    # --- the run -------------------------------------------------------------------

    def run(self) -> dict:
        with self.db.advisory_lock(LOCK_NAME) as got:  # held as long as the run
            if not got:
                raise CleanupBusyError("another cleanup run is in progress; try again when it has finished")
            for step in (self.time_out_nodes, self.provisioning_passes, self.tear_down_deleted,
                         self.remove_orphans, self.remove_records, self.prune, self.prune_audit,
                         self.send_webhooks):
                if self.report.capped and step not in (self.prune, self.prune_audit, self.send_webhooks):
                    continue
                try:
                    step()
                except DatabaseUnavailableError:
                    raise
                except Exception as e:  # noqa: BLE001 - one step failing must not stop the others
                    log.exception("cleanup step %s failed", step.__name__)
                    self.report.error(step.__name__, f"{type(e).__name__}: {e}")
        summary = self.report.summary()
        log.info("cleanup run", extra={"counts": summary["counts"], "dry_run": summary["dry_run"],
                                       "errors": len(summary["errors"])})
        return summary

    def _may_delete(self) -> bool:
        if self.report.deletions >= self.settings.cleanup_cap:
            self.report.capped = True
            return False
        return True

    # --- 1. nodes past their stage's timeout --------------------------------------------

    def time_out_nodes(self) -> None:
        """Nodes past their stage's timeout become failed: one statement per stage moves
        them all and writes one event each."""
        for stage, seconds in self.settings.stage_timeouts.items():
            with self.db.transaction() as tx:
                moved = nodes.time_out(tx, stage, seconds, _duration(seconds), SOURCE, self.dry_run)
            for row in moved:
                self.report.add("node_timed_out", node_id=row["node_id"], hostname=row.get("hostname"), stage=stage,
                                message=row["message"])

    # --- 2. provisioning passes, and what was marked for deletion --------------------------

    def provisioning_passes(self) -> None:
        """A provisioning pass over each deployment with a provider: finishes servers still
        being created, and deletes the servers of deleted nodes and deployments. A pass
        whose deletions would go past the cap is left for the next run."""
        with self.db.transaction() as tx:
            pending = deployments.pending_deletions(tx)
        for deployment in pending:
            if deployment["pending"] > self.settings.cleanup_cap - self.report.deletions:
                self.report.capped = True
                return
            if self.dry_run:
                with self.db.transaction() as tx:
                    for node in nodes.servers_to_delete(tx, deployment["id"]):
                        self.report.add("server_deleted", instance_id=node["instance_id"], node_id=node["id"],
                                        deployment=deployment["name"])
                self.report.deletions += deployment["pending"]
                continue
            try:
                result = provisioner.reconcile(deployment["id"], settings=self.settings)
            except Exception as e:  # noqa: BLE001 - reported, the run goes on
                self.report.error("provisioning_pass", str(e), deployment=deployment["name"])
                continue
            for name in result["deleting"] + result["orphans_deleted"]:
                self.report.add("server_deleted", server=name, deployment=deployment["name"])
            self.report.deletions += len(result["deleting"]) + len(result["orphans_deleted"])
            for name in result["created"]:
                self.report.add("server_created", server=name, deployment=deployment["name"])
            for name in result["deleted"]:
                self.report.add("node_deleted", node=name, deployment=deployment["name"])
            if result["state"] == "deleted":
                self.report.add("deployment_deleted", name=deployment["name"])
            for message in result["errors"]:
                self.report.error("provisioning_pass", message, deployment=deployment["name"])

    def tear_down_deleted(self) -> None:
        """Nodes being deleted that no provider manages, and deployments without a provider."""
        with self.db.transaction() as tx:
            deleted = nodes.delete_unmanaged(tx, SOURCE, self.dry_run)
        for row in deleted:
            self.report.add("node_deleted", node_id=row["node_id"], hostname=row.get("hostname"))
        with self.db.transaction() as tx:
            finished = deployments.finished_without_provider(tx, counting_deprovisioning=self.dry_run)
        for deployment in finished:
            self.report.add("deployment_deleted", deployment_id=deployment["id"], name=deployment["name"])
            if self.dry_run:
                continue
            with self.db.transaction() as tx:
                deployments.set_deleted(tx, deployment["id"], f"deployment {deployment['name']} deleted", SOURCE)

    def _delete_orphan(self, instance_id: str, **where: Any) -> bool:
        """Delete one orphaned server (counted against the cap). False if it was not deleted."""
        if not self._may_delete():
            return False
        self.report.deletions += 1
        self.report.add("orphan_server_deleted", instance_id=instance_id, **where)
        if self.dry_run:
            return True
        try:
            self.servers.delete(instance_id)
        except Exception as e:  # noqa: BLE001 - reported, the run goes on
            self.report.error("orphan_server_deleted", str(e), instance_id=instance_id, **where)
            with self.db.transaction() as tx:
                events.add(tx, "error", f"deleting server {instance_id} failed: {e}", SOURCE,
                                node_id=where.get("node_id"), deployment_id=where.get("deployment_id"))
            return False
        with self.db.transaction() as tx:
            events.add(tx, "cleanup", f"orphaned server {instance_id} deleted: bootfleet owns it and no node refers to it", SOURCE,
                            node_id=where.get("node_id"), deployment_id=where.get("deployment_id"))
        return True

    # --- 3. owned orphans ---------------------------------------------------------------

    def remove_orphans(self) -> None:
        cutoff = utcnow() - datetime.timedelta(seconds=self.settings.cleanup_grace)
        if self.servers is not None:
            try:
                owned = self.servers.list_owned()
            except Exception as e:  # noqa: BLE001
                self.report.error("orphan_server_deleted", f"listing owned servers failed: {e}")
                owned = []
            with self.db.transaction() as tx:
                known = nodes.server_ids(tx, live_only=True)
            for server in owned:
                if server.id in known or server.status == "deleting" or (
                        server.created_at and server.created_at > cutoff):
                    continue
                if not self._delete_orphan(server.id, name=server.name) and self.report.capped:
                    return

    # --- 4. DNS records of nodes and deployments that are gone ---------------------------

    def remove_records(self) -> None:
        """A DNS reconcile over everything: records bootfleet owns that no ready node or live
        deployment wants any more are deleted (each counted against the cap)."""
        if self.dns is None:
            return
        try:
            plan = reconcile_records(self.settings, dry_run=True, provider=self.dns, source=SOURCE, database=self.db)
        except DnsProviderError as e:
            self.report.error("record_deleted", f"DNS reconcile failed: {e}")
            return
        deletes = [op for op in plan.plan if op.action == "delete"]
        room = self.settings.cleanup_cap - self.report.deletions
        if len(deletes) > room:
            self.report.capped = True
            self.report.error("record_deleted", f"{len(deletes)} DNS records to delete, more than the {room}"
                              " deletions left under the cap; left for the next run")
            return
        for op in deletes:
            self.report.add("record_deleted", **{k: v for k, v in op.view().items() if k != "action"})
        self.report.deletions += len(deletes)
        if self.dry_run or not plan.plan:
            return
        result = reconcile_records(self.settings, provider=self.dns, source=SOURCE, database=self.db)
        for failure in result.failed:
            self.report.error("record_deleted", failure.get("error", "failed"), **{
                k: v for k, v in failure.items() if k != "error"})

    # --- 5. history past its retention ---------------------------------------------------

    def prune(self) -> None:
        days = self.settings.retention_days
        with self.db.transaction() as tx:
            old_events = events.count_before(tx, days)
            old_nodes = nodes.count_deleted_before(tx, days)
        if old_events:
            self.report.counts["events_pruned"] = old_events
        if old_nodes:
            self.report.counts["nodes_removed"] = old_nodes
        if self.dry_run:
            return
        while True:  # in batches, so no transaction holds many locks for long
            with self.db.transaction() as tx:
                pruned = events.prune_before(tx, days, PRUNE_BATCH)
            if pruned < PRUNE_BATCH:
                break
        with self.db.transaction() as tx:
            nodes.remove_deleted_before(tx, days)
            if old_events or old_nodes:
                events.add(tx, "cleanup", f"pruned {old_events} events and {old_nodes} deleted nodes older than"
                                f" {days} days", SOURCE)

    def prune_audit(self) -> None:
        """Audit entries past BOOTFLEET_AUDIT_RETENTION_DAYS (0: kept for ever), in batches."""
        days = self.settings.audit_retention_days
        if days <= 0:
            return
        with self.db.transaction() as tx:
            old = audit.count_before(tx, days)
        if not old:
            return
        self.report.counts["audit_pruned"] = old
        while not self.dry_run:
            with self.db.transaction() as tx:
                if audit.prune_before(tx, days, PRUNE_BATCH) < PRUNE_BATCH:
                    break

    # --- 6. webhooks: what is due in the outbox, sent (bootfleet/notify.py) -----------------

    def send_webhooks(self) -> None:
        for name, count in notify.send_due(self.db, self.settings, self.dry_run).items():
            self.report.counts[f"webhooks_{name}"] = count
        if not self.dry_run:  # finished deliveries go with the events they were about
            with self.db.transaction() as tx:
                webhook_rows.prune_before(tx, self.settings.retention_days, PRUNE_BATCH)




def _duration(seconds: int) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m {secs}s" if hours else f"{minutes}m {secs}s"
