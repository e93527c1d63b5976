"""Provisioning: a deployment's desired count becomes nodes, and nodes become servers.

`reconcile(deployment)` makes one pass, safe to repeat and to run from anywhere (the
config API after a create, scale or delete; `POST .../reconcile`; a cron):

1. plan: nodes `<deployment>-0 .. <deployment>-<count-1>` exist (new ones start in
   `provisioning`); nodes past the count are marked `deprovisioning`;
2. create: each provisioning node without a server gets one. The server is looked up
   by name first, so a repeated or retried create never makes a second one; what the
   API answered (instance id, IP, MAC) is recorded before the server is tagged;
3. watch: the server's status drives the node: `pending`/`running` keep it
   `provisioning` (boot moves it on when it asks for its script), `failed` makes it
   `failed` with the API's status reasons as the event;
4. tear down: deprovisioning nodes' servers are deleted; the node is `deleted` once
   the API no longer knows the server. Servers tagged for the deployment that no node
   records (a create whose answer was lost, then a scale down) are deleted too;
5. a `deleting` deployment whose nodes are all gone becomes `deleted`.

Every failure is an event with the API's message; nothing already recorded is lost.
One pass at a time per deployment (a PostgreSQL advisory lock); others answer busy.
"""

from __future__ import annotations

import datetime
import logging
import re
from dataclasses import asdict, dataclass, field

from bootfleet.db import deployments, events, get_database, nodes
from bootfleet.db.connection import Database
from bootfleet.errors import ConflictError, SettingsError
from bootfleet.providers.vpc.base import Provider, Server, ServerSpec, VpcError
from bootfleet.providers.vpc.choose import provider_for
from bootfleet.provision.fleet import server_user_data
from bootfleet.provision.placement import node_index, node_name
from bootfleet.settings import Settings, get_settings

log = logging.getLogger(__name__)
SOURCE = "provision"
LIVE = ("registered", "provisioning", "booting", "configuring", "installing", "rebooting", "ready", "failed")
ADOPT_SKEW = datetime.timedelta(seconds=60)  # clock difference tolerated when adopting an untagged server
_IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

@dataclass
class Report:
    deployment: str
    provider: str
    state: str = ""
    created: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    deleting: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    orphans_deleted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    busy: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def reconcile(key: str, base_url: str | None = None, provider: Provider | None = None,
              settings: Settings | None = None) -> dict:
    """One provisioning pass for a deployment (id or name); returns what it did."""
    settings = settings or get_settings()
    db = get_database()
    with db.transaction() as tx:
        deployment = deployments.get(tx, key)
    report = Report(deployment["name"], deployment["provider"], deployment["state"])
    if deployment["provider"] == "none" and provider is None:
        return report.as_dict()
    with db.advisory_lock(f"bootfleet-provision:{deployment['id']}") as got:  # one pass per deployment
        if not got:
            report.busy = True
            return report.as_dict()
        try:
            provider = provider or provider_for(deployment, settings)
        except (SettingsError, VpcError) as e:
            _error(db, deployment, None, f"cannot provision: {e}", report)
            return report.as_dict()
        Provisioner(db, deployment["id"], provider, base_url or settings.base_url, report, settings).run()
    return report.as_dict()


def _error(db: Database, deployment: dict, node: dict | None, message: str, report: Report) -> None:
    report.errors.append(message)
    log.warning("provisioning: %s", message, extra={"deployment": deployment["name"]})
    with db.transaction() as tx:
        events.add(tx, "error", message, SOURCE, node_id=node["id"] if node else None,
                        deployment_id=deployment["id"])


class Provisioner:
    """One pass over one deployment."""

    def __init__(self, db: Database, deployment_id: str, provider: Provider, base_url: str | None, report: Report,
                 settings: Settings):
        self.db = db
        self.settings = settings
        self.deployment_id = deployment_id
        self.provider = provider
        self.base_url = base_url
        self.report = report
        self.deployment: dict = {}
        self._image: str | None = None
        self.unauthorized = False
        self.claimed: set[str] = set()  # servers tagged in this pass

    @property
    def name(self) -> str:
        return self.deployment["name"]

    def run(self) -> None:
        planned = self.plan()
        batch = self.settings.provision_batch
        for node in [n for n in planned if n["stage"] == "provisioning" and not n["instance_id"]][:batch]:
            self.guard(node, self.ensure_server)
        for node in self.nodes():
            if node["instance_id"] and node["stage"] in LIVE and (
                    node["stage"] == "provisioning" or not node["ip"] or not node["macs"]):
                self.guard(node, self.watch)
        for node in self.nodes():
            if node["stage"] == "registered" and node["instance_id"]:  # a reinstall whose server was stopping
                self.guard(node, self.resume_reinstall)
        for node in self.nodes():
            if node["stage"] == "deprovisioning":
                self.guard(node, self.teardown)
        self.guard(None, self.remove_orphans)
        self.finish()

    def guard(self, node: dict | None, step) -> None:
        """Run one step; a failure becomes an event with the API's message. After an
        authentication failure the pass stops: every other call would fail the same way."""
        if self.unauthorized:
            return
        try:
            step(node) if node is not None else step()
        except VpcError as e:
            _error(self.db, self.deployment, node, str(e), self.report)
            self.unauthorized = e.unauthorized
            # A refusal of the request itself fails the node; a taken name (the holder may be
            # going away) or a conflict is retried by the next pass.
            if node is not None and not e.retryable and 400 <= e.http_status < 500 and e.http_status not in (404, 409) \
                    and not e.has_code("validation_unique_failed") and node["stage"] == "provisioning" \
                    and not node["instance_id"]:
                self.set_stage(node, "failed", f"server {node['hostname']} cannot be created: {e.message}")
                self.report.failed.append(node["hostname"])
        except (SettingsError, ConflictError) as e:
            _error(self.db, self.deployment, node, str(e), self.report)

    # --- database ----------------------------------------------------------------------

    def nodes(self) -> list[dict]:
        with self.db.transaction() as tx:
            self.deployment = deployments.get(tx, self.deployment_id)
            return nodes.of_deployment(tx, self.deployment_id)

    def event(self, node: dict | None, message: str) -> None:
        with self.db.transaction() as tx:
            events.add(tx, "provision", message, SOURCE, node_id=node["id"] if node else None,
                            deployment_id=self.deployment_id)

    def set_stage(self, node: dict, stage: str, message: str) -> None:
        with self.db.transaction() as tx:
            nodes.get(tx, node["id"], lock=True)
            nodes.set_stage(tx, node["id"], stage, SOURCE, message, self.deployment_id)
        node["stage"] = stage

    def record(self, node: dict, server: Server) -> None:
        """Keep what the API told us about the node's server."""
        changes = {}
        if node["instance_id"] != server.id:
            changes["instance_id"] = server.id
        if server.ip and node["ip"] != server.ip:
            changes["ip"] = server.ip
        if server.mac and server.mac not in (node["macs"] or []):
            changes["macs"] = [server.mac]
        if not changes:
            return
        with self.db.transaction() as tx:
            nodes.update(tx, node["id"], changes)
            shown = ", ".join(f"{k} {v if k != 'macs' else v[0]}" for k, v in changes.items())
            events.add(tx, "provision", f"server {server.name}: {shown} (status {server.status})", SOURCE,
                            node_id=node["id"], deployment_id=self.deployment_id)
        node.update({k: v for k, v in changes.items()})

    # --- 1. plan -----------------------------------------------------------------------

    def plan(self) -> list[dict]:
        with self.db.transaction() as tx:
            self.deployment = deployments.get(tx, self.deployment_id, lock=True)
            current = nodes.of_deployment(tx, self.deployment_id)
            if self.deployment["state"] == "active":
                desired = self.deployment["desired_count"]
                live = {n["hostname"] for n in current if n["stage"] in LIVE}
                for index in range(desired):
                    hostname = node_name(self.name, index)
                    if hostname not in live:
                        nodes.create(tx, {"deployment_id": self.deployment_id, "hostname": hostname,
                                               "stage": "provisioning"}, SOURCE,
                                          f"node {hostname} created; provisioning its server")
                for node in current:
                    index = node_index(self.name, node["hostname"])
                    if node["stage"] in LIVE and index is not None and index >= desired:
                        nodes.set_stage(tx, node["id"], "deprovisioning", SOURCE,
                                             f"deployment scaled down to {desired}", self.deployment_id)
            else:
                for node in current:
                    if node["stage"] in LIVE:
                        nodes.set_stage(tx, node["id"], "deprovisioning", SOURCE, "deployment deleted",
                                             self.deployment_id)
        self.report.state = self.deployment["state"]
        return self.nodes()

    # --- 2. create ---------------------------------------------------------------------

    def spec(self, node: dict) -> ServerSpec:
        placement = self.deployment["placement"] or {}
        base = self.base_url
        if not base:
            raise SettingsError("BOOTFLEET_BASE_URL is not set; servers need the boot URL in their user data")
        keys = tuple(k.strip() for k in placement.get("keys", "").split(",") if k.strip())
        return ServerSpec(
            name=node["hostname"], deployment=self.name, zone=placement.get("zone", ""),
            vpc=placement.get("vpc", ""), subnet=placement.get("subnet", ""), profile=placement.get("profile", ""),
            image=self.image(), user_data=server_user_data(node, base, self.provider), keys=keys,
            resource_group=placement.get("resource_group"), base_url=base,
        )

    def image(self) -> str:
        if self._image:
            return self._image
        placement = self.deployment["placement"] or {}
        settings = self.settings
        image = placement.get("image")
        if not image and getattr(self.provider, "kind", None) == "instance":
            image = settings.vpc_vsi_image
            if not image:
                raise SettingsError("BOOTFLEET_VPC_VSI_IMAGE is not set (the custom iPXE image for virtual servers);"
                                    " or give placement.image")
        if not image and hasattr(self.provider, "ipxe_image"):
            image = settings.vpc_ipxe_image or self.provider.ipxe_image()
        self._image = image or ""
        return self._image

    def ensure_server(self, node: dict) -> None:
        name = node["hostname"]
        server = self.provider.find(name)
        created = server is None
        if created:
            # (A name taken meanwhile answers the server of that name: checked below like a found one.)
            server = self.provider.create(self.spec(node))
        holder = self.holder(server.id, node["id"])
        if holder is not None:
            self.event(node, f"server {name} ({server.id}) still belongs to node {holder}, which is being"
                             " deprovisioned; waiting for it to go")
            return
        if not self.adoptable(node, server) and not self.provider.is_owned(server, self.name):
            raise VpcError(f"create {name}", 409, "name_taken",
                           f"a server named {name} ({server.id}) exists and bootfleet does not own it;"
                           " rename or delete it, or scale around it")
        self.record(node, server)  # recorded before tagging: a tagging failure loses nothing
        self.provider.claim(server, self.name)
        self.claimed.add(server.id)
        (self.report.created if created else self.report.adopted).append(name)

    def holder(self, server_id: str, node_id: str) -> str | None:
        with self.db.transaction() as tx:
            return nodes.holding_server(tx, server_id, node_id)

    @staticmethod
    def adoptable(node: dict, server: Server) -> bool:
        """An untagged server with the node's name made after the node: our own create
        whose answer was lost (or whose tagging failed)."""
        return server.created_at is not None and server.created_at >= node["created_at"] - ADOPT_SKEW

    # --- 3. watch ------------------------------------------------------------------------

    def watch(self, node: dict) -> None:
        server = self.provider.get(node["instance_id"])
        if server is None:
            if node["stage"] == "provisioning":
                self.set_stage(node, "failed", f"server {node['hostname']} ({node['instance_id']}) no longer exists")
                self.report.failed.append(node["hostname"])
            return
        self.record(node, server)
        if server.status != "deleting" and server.id not in self.claimed and not self.provider.is_owned(
                server, self.name):
            # Recorded, but its tag does not show (tagging is eventually consistent, or the
            # tagging failed after the record): tag it again, so cleanup never loses track.
            self.provider.claim(server, self.name)
            self.event(node, f"server {server.name} ({server.id}) tagged again: its ownership tag did not show yet")
        if server.status == "failed" and node["stage"] not in ("failed", "deprovisioning", "deleted"):
            reasons = "; ".join(server.reasons) or "no reason given"
            self.set_stage(node, "failed", f"server {server.name} failed: {reasons}")
            self.report.failed.append(node["hostname"])

    def resume_reinstall(self, node: dict) -> None:
        """A reinstalled node's server was still stopping: reinitialize it now that it has
        stopped (the provider answers None while it has not, or when nothing is left to do)."""
        def user_data() -> str:  # built only once the server has stopped
            if not self.base_url:
                raise SettingsError("BOOTFLEET_BASE_URL is not set; servers need the boot URL in their user data")
            return server_user_data(node, self.base_url, self.provider)

        if self.provider.resume_reinstall(node["instance_id"], user_data):
            self.event(node, f"server {node['hostname']} ({node['instance_id']}) reinitialized with new user data"
                             " to reinstall")

    # --- 4. tear down --------------------------------------------------------------------

    def teardown(self, node: dict) -> None:
        name = node["hostname"] or node["id"]
        if not node["instance_id"]:
            server = self.provider.find(node["hostname"]) if node["hostname"] else None
            if server is None or self.holder(server.id, node["id"]) is not None or not (
                    self.provider.is_owned(server, self.name) or self.adoptable(node, server)):
                self.set_stage(node, "deleted", f"node {name} removed; it had no server")
                self.report.deleted.append(name)
                return
            self.record(node, server)
        server = self.provider.get(node["instance_id"])
        if server is None:
            self.set_stage(node, "deleted", f"server {name} ({node['instance_id']}) is gone")
            self.report.deleted.append(name)
            return
        if server.status != "deleting":
            if not self.provider.delete(server.id):
                self.set_stage(node, "deleted", f"server {name} ({server.id}) is gone")
                self.report.deleted.append(name)
                return
            self.event(node, f"deleting server {name} ({server.id})")
        self.report.deleting.append(name)

    def remove_orphans(self) -> None:
        with self.db.transaction() as tx:
            known = nodes.server_ids(tx, self.deployment_id)
        for server in self.provider.list_owned(self.name, frozenset(known)):
            if server.id in known or server.status == "deleting":
                continue
            self.provider.delete(server.id)
            self.event(None, f"deleted server {server.name} ({server.id}): tagged for this deployment, but no node"
                             " records it")
            self.report.orphans_deleted.append(server.name)

    # --- 5. finish -----------------------------------------------------------------------

    def finish(self) -> None:
        with self.db.transaction() as tx:
            deployment = deployments.get(tx, self.deployment_id, lock=True)
            if deployment["state"] != "deleting":
                return
            left = nodes.count_not_deleted(tx, self.deployment_id)
            if left or self.report.deleting or self.report.orphans_deleted or self.report.errors:
                return
            deployments.set_deleted(tx, self.deployment_id, "every server is gone; deployment deleted", SOURCE)
        self.report.state = "deleted"


def reconcile_all(base_url: str | None = None) -> list[dict]:
    """A pass over every deployment that has a provider and is not deleted (for a cron)."""
    with get_database().transaction() as tx:
        ids = [d["id"] for d in deployments.with_provider(tx, live_only=True)]
    return [reconcile(i, base_url) for i in ids]
