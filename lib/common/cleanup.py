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

from bootfleet.db import events
from bootfleet.db.connection import Database, utcnow
from bootfleet.dns.reconcile import reconcile_records
from bootfleet.errors import ConflictError, DatabaseUnavailableError
from bootfleet.providers.dns.base import DnsProvider, DnsProviderError
from bootfleet.providers.vpc.base import Server
from bootfleet.provision import provisioner
from bootfleet.settings import get_settings

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
class Options:
    dry_run: bool = False
    cap: int = 50
    grace_seconds: int = 3600
    retention_days: int = 30
    stage_timeouts: dict[str, int] = field(default_factory=dict)


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
    def __init__(self, database: Database, options: Options, servers: ServerProvider | None = None,
                 dns: DnsProvider | None = None):
        self.db = database
        self.options = options
        self.servers = servers
        self.dns = dns
        self.report = Report(options.dry_run)

    # --- the run -------------------------------------------------------------------

    def run(self) -> dict:
        with self.db.advisory_lock(LOCK_NAME) as got:  # held as long as the run
            if not got:
                raise CleanupBusyError("another cleanup run is in progress; try again when it has finished")
            for step in (self.time_out_nodes, self.provisioning_passes, self.tear_down_deleted,
                         self.remove_orphans, self.remove_records, self.prune):
                if self.report.capped and step is not self.prune:
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
        if self.report.deletions >= self.options.cap:
            self.report.capped = True
            return False
        return True

    # --- 1. nodes past their stage's timeout --------------------------------------------

    def time_out_nodes(self) -> None:
        """Nodes past their stage's timeout become failed: one statement per stage moves
        them all and writes one event each."""
        for stage, seconds in self.options.stage_timeouts.items():
            params = {"stage": stage, "s": seconds, "limit": _duration(seconds)}
            stuck = ("SELECT id, deployment_id, extract(epoch FROM now() - stage_changed_at)::int AS took"
                     " FROM node WHERE stage = :stage AND stage_changed_at < now() - make_interval(secs => :s)")
            message = (f"'timed out in ' || :stage || ' after ' || {_SQL_DURATION} || ' (limit ' || :limit || ')'")
            with self.db.transaction() as tx:
                if self.options.dry_run:
                    rows = tx.all(f"SELECT id AS node_id, {message} AS message FROM ({stuck}) s", **params)
                else:
                    rows = tx.all(
                        f"WITH stuck AS ({stuck} FOR UPDATE SKIP LOCKED),"
                        " moved AS (UPDATE node n SET stage = 'failed', stage_changed_at = now(), updated_at = now(),"
                        "  stage_times = n.stage_times || jsonb_build_object('failed', now())"
                        "  FROM stuck WHERE n.id = stuck.id RETURNING n.id, n.deployment_id, stuck.took)"
                        " INSERT INTO event (node_id, deployment_id, stage, kind, message, source)"
                        f" SELECT id, deployment_id, 'failed', 'stage', {message}, :source FROM moved"
                        " RETURNING node_id, message",
                        source=SOURCE, **params,
                    )
            for row in rows:
                self.report.add("node_timed_out", node_id=row["node_id"], stage=stage, message=row["message"])

    # --- 2. provisioning passes, and what was marked for deletion --------------------------

    def provisioning_passes(self) -> None:
        """A provisioning pass over each deployment with a provider: finishes servers still
        being created, and deletes the servers of deleted nodes and deployments. A pass
        whose deletions would go past the cap is left for the next run."""
        with self.db.transaction() as tx:
            deployments = tx.all(
                "SELECT d.id, d.name, (SELECT count(*) FROM node n WHERE n.deployment_id = d.id"
                " AND n.stage = 'deprovisioning' AND n.instance_id IS NOT NULL) AS pending"
                " FROM deployment d WHERE d.provider <> 'none' AND d.state <> 'deleted' ORDER BY d.name"
            )
        for deployment in deployments:
            if deployment["pending"] > self.options.cap - self.report.deletions:
                self.report.capped = True
                return
            if self.options.dry_run:
                with self.db.transaction() as tx:
                    for node in tx.all("SELECT id, instance_id FROM node WHERE deployment_id = :id"
                                       " AND stage = 'deprovisioning' AND instance_id IS NOT NULL",
                                       id=deployment["id"]):
                        self.report.add("server_deleted", instance_id=node["instance_id"], node_id=node["id"],
                                        deployment=deployment["name"])
                self.report.deletions += deployment["pending"]
                continue
            try:
                result = provisioner.reconcile(deployment["id"], get_settings().base_url)
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
        gone = ("SELECT n.id, n.instance_id FROM node n LEFT JOIN deployment d ON d.id = n.deployment_id"
                " WHERE n.stage = 'deprovisioning' AND (d.id IS NULL OR d.provider = 'none')")
        message = ("'deleted' || CASE WHEN instance_id IS NULL THEN '' ELSE '; server ' || instance_id"
                   " || ' was not created by bootfleet and is left alone' END")
        with self.db.transaction() as tx:
            if self.options.dry_run:
                rows = tx.all(f"SELECT id AS node_id FROM ({gone}) g")
            else:
                rows = tx.all(
                    f"WITH gone AS ({gone} FOR UPDATE OF n SKIP LOCKED),"
                    " moved AS (UPDATE node n SET stage = 'deleted', stage_changed_at = now(), updated_at = now(),"
                    "  stage_times = n.stage_times || jsonb_build_object('deleted', now())"
                    "  FROM gone WHERE n.id = gone.id RETURNING n.id, n.deployment_id, gone.instance_id),"
                    " freed AS (DELETE FROM node_mac WHERE node_id IN (SELECT id FROM moved))"
                    " INSERT INTO event (node_id, deployment_id, stage, kind, message, source)"
                    f" SELECT id, deployment_id, 'deleted', 'stage', {message}, :source FROM moved RETURNING node_id",
                    source=SOURCE,
                )
        for row in rows:
            self.report.add("node_deleted", node_id=row["node_id"])
        with self.db.transaction() as tx:
            deployments = tx.all(
                "SELECT d.id, d.name FROM deployment d WHERE d.state = 'deleting' AND d.provider = 'none'"
                " AND NOT EXISTS (SELECT 1 FROM node n WHERE n.deployment_id = d.id AND n.stage <> 'deleted'"
                + (" AND n.stage <> 'deprovisioning'" if self.options.dry_run else "") + ")"
            )
        for deployment in deployments:
            self.report.add("deployment_deleted", deployment_id=deployment["id"], name=deployment["name"])
            if self.options.dry_run:
                continue
            with self.db.transaction() as tx:
                tx.run("UPDATE deployment SET state = 'deleted', updated_at = now() WHERE id = :id",
                       id=deployment["id"])
                events.add(tx, "deployment", f"deployment {deployment['name']} deleted", SOURCE,
                                deployment_id=deployment["id"])

    def _delete_orphan(self, instance_id: str, **where: Any) -> bool:
        """Delete one orphaned server (counted against the cap). False if it was not deleted."""
        if not self._may_delete():
            return False
        self.report.deletions += 1
        self.report.add("orphan_server_deleted", instance_id=instance_id, **where)
        if self.options.dry_run:
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
        cutoff = utcnow() - datetime.timedelta(seconds=self.options.grace_seconds)
        if self.servers is not None:
            try:
                owned = self.servers.list_owned()
            except Exception as e:  # noqa: BLE001
                self.report.error("orphan_server_deleted", f"listing owned servers failed: {e}")
                owned = []
            with self.db.transaction() as tx:
                known = {r["instance_id"] for r in tx.all(
                    "SELECT instance_id FROM node WHERE instance_id IS NOT NULL AND stage <> 'deleted'")}
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
            plan = reconcile_records(get_settings(), dry_run=True, provider=self.dns, source=SOURCE, database=self.db)
        except DnsProviderError as e:
            self.report.error("record_deleted", f"DNS reconcile failed: {e}")
            return
        deletes = [op for op in plan.plan if op.action == "delete"]
        room = self.options.cap - self.report.deletions
        if len(deletes) > room:
            self.report.capped = True
            self.report.error("record_deleted", f"{len(deletes)} DNS records to delete, more than the {room}"
                              " deletions left under the cap; left for the next run")
            return
        for op in deletes:
            self.report.add("record_deleted", **{k: v for k, v in op.view().items() if k != "action"})
        self.report.deletions += len(deletes)
        if self.options.dry_run or not plan.plan:
            return
        result = reconcile_records(get_settings(), provider=self.dns, source=SOURCE, database=self.db)
        for failure in result.failed:
            self.report.error("record_deleted", failure.get("error", "failed"), **{
                k: v for k, v in failure.items() if k != "error"})

    # --- 5. history past its retention ---------------------------------------------------

    def prune(self) -> None:
        days = self.options.retention_days
        with self.db.transaction() as tx:
            old_events = tx.scalar("SELECT count(*) FROM event WHERE created_at < now() - make_interval(days => :d)",
                                   d=days)
            old_nodes = tx.scalar("SELECT count(*) FROM node WHERE stage = 'deleted'"
                                  " AND stage_changed_at < now() - make_interval(days => :d)", d=days)
        if old_events:
            self.report.counts["events_pruned"] = old_events
        if old_nodes:
            self.report.counts["nodes_removed"] = old_nodes
        if self.options.dry_run:
            return
        while True:  # in batches, so no transaction holds many locks for long
            with self.db.transaction() as tx:
                deleted = tx.all(
                    "DELETE FROM event WHERE id IN (SELECT id FROM event"
                    " WHERE created_at < now() - make_interval(days => :d) ORDER BY id LIMIT :n) RETURNING id",
                    d=days, n=PRUNE_BATCH,
                )
            if len(deleted) < PRUNE_BATCH:
                break
        with self.db.transaction() as tx:
            tx.run("DELETE FROM node WHERE stage = 'deleted' AND stage_changed_at < now() - make_interval(days => :d)",
                   d=days)
            if old_events or old_nodes:
                events.add(tx, "cleanup", f"pruned {old_events} events and {old_nodes} deleted nodes older than"
                                f" {days} days", SOURCE)


# _duration() in SQL, for the `took` column.
_SQL_DURATION = ("CASE WHEN took >= 3600 THEN (took / 3600) || 'h ' || (took % 3600 / 60) || 'm ' || (took % 60) || 's'"
                 " ELSE (took / 60) || 'm ' || (took % 60) || 's' END")


def _duration(seconds: int) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m {secs}s" if hours else f"{minutes}m {secs}s"
