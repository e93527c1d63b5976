"""Every server bootfleet owns, across deployments (cleanup's orphan sweep), and
restarting one node's server (a reinstall)."""

from __future__ import annotations

import logging

from bootfleet.boot import ipxe
from bootfleet.db import deployments, events, get_database, nodes
from bootfleet.errors import SettingsError
from bootfleet.providers.vpc.base import Provider, Server, VpcError
from bootfleet.providers.vpc.choose import provider_for
from bootfleet.settings import Settings, get_settings
from bootfleet.tokens import hash_secret, new_enrolment_secret

log = logging.getLogger(__name__)
SOURCE = "provision"


class Fleet:
    """Every server bootfleet owns, across deployments: what cleanup's orphan sweep and
    teardown need (cleanup.ServerProvider: `list_owned()`, `delete(instance_id)`)."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or get_settings()
        self._where: dict[str, Provider] = {}

    def _providers(self) -> list[tuple[dict, Provider]]:
        with get_database().transaction() as tx:
            with_provider = deployments.with_provider(tx)
        found = []
        for deployment in with_provider:
            try:
                found.append((deployment, provider_for(deployment, self.settings)))
            except SettingsError as e:
                log.warning("no provider for %s: %s", deployment["name"], e)
        return found

    def list_owned(self) -> list[Server]:
        owned = []
        for deployment, provider in self._providers():
            for server in provider.list_owned(deployment["name"]):
                self._where[server.id] = provider
                owned.append(server)
        return owned

    def delete(self, instance_id: str) -> None:
        provider = self._where.get(instance_id)
        if provider is None:
            with get_database().transaction() as tx:
                row = deployments.of_server(tx, instance_id)
            if row is None or row["provider"] == "none":
                raise SettingsError(f"server {instance_id} belongs to no deployment with a provider")
            provider = provider_for(row, self.settings)
        provider.delete(instance_id)


def reboot_server(node: dict, base_url: str, settings: Settings | None = None) -> dict:
    """Restart a node's server so it network-boots again (after a reinstall request).
    A server created with an enrolment secret gets a new one: its user data is replaced
    (the provider's `reinstall`) and the old secret stops working.
    Answers {"rebooted": server id} or {"error": why}; either way an event says so."""
    db = get_database()
    with db.transaction() as tx:
        deployment = deployments.get(tx, node["deployment_id"]) if node["deployment_id"] else None
    if deployment is None or deployment["provider"] == "none":
        return {"error": f"server {node['instance_id']} was not created by bootfleet; power-cycle it yourself"}
    settings = settings or get_settings()
    try:
        provider = provider_for(deployment, settings)
        if node.get("secret_hash"):
            secret = new_enrolment_secret()
            user_data = ipxe.chainloader(provider.boot_url(settings.base_url or base_url), 10, secret=secret)
            with db.transaction() as tx:
                nodes.set_secret(tx, node["id"], hash_secret(secret))
            try:
                provider.reinstall(node["instance_id"], user_data)
            except Exception:
                with db.transaction() as tx:
                    nodes.set_secret(tx, node["id"], node["secret_hash"])  # the server keeps its old one
                raise
        else:
            provider.reboot(node["instance_id"])
        answer, message = {"rebooted": node["instance_id"]}, f"server {node['instance_id']} restarted to reinstall"
    except (VpcError, SettingsError) as e:
        answer, message = {"error": str(e)}, f"restarting server {node['instance_id']} failed: {e}"
    with db.transaction() as tx:
        events.add(tx, "provision" if "rebooted" in answer else "error", message, SOURCE, node_id=node["id"],
                        deployment_id=node["deployment_id"])
    return answer
