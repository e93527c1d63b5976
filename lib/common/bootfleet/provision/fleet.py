"""Every server bootfleet owns, across deployments (cleanup's orphan sweep); the user
data a node's server boots with; and reinstalling one node's server."""

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
        """Tagged for a deployment, or recorded by one of its nodes (a tag may not show yet)."""
        owned = []
        for deployment, provider in self._providers():
            with get_database().transaction() as tx:
                known = frozenset(nodes.server_ids(tx, deployment["id"]))
            for server in provider.list_owned(deployment["name"], known):
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


def server_user_data(node: dict, base_url: str, provider: Provider) -> str:
    """The user data a node's server boots with, at creation and at a reinstall: the
    chainloader for bootfleet's URL as the server reaches it. The one place it is built.
    A provider whose servers can present an enrolment secret (`provider.enrols`: bare
    metal's iPXE user data, local VMs) gets a fresh one in the chain URL; its hash is
    stored first, so no server ever holds a secret bootfleet does not know, and the
    node's earlier secret stops working (docs/security.md)."""
    secret = None
    if provider.enrols:
        secret = new_enrolment_secret()
        with get_database().transaction() as tx:
            nodes.set_secret(tx, node["id"], hash_secret(secret))
    return ipxe.chainloader(provider.boot_url(base_url), 10, secret=secret)


REINSTALLED = {
    "restarted": "server {id} restarted to reinstall",
    "stopping": "server {id} stopping to reinstall; the next provisioning pass reinitializes it with new user data",
    "reinitialized": "server {id} reinitialized with new user data to reinstall",
}


def reinstall_server(node: dict, base_url: str, settings: Settings | None = None, wait: float = 0) -> dict:
    """Make a node's server network-boot again with new user data (`server_user_data`: a
    new enrolment secret where the server has one): an IBM Cloud server (bare metal or
    instance) is stopped and reinitialized, and the API starts it (`wait` seconds for the
    stop, else a provisioning pass finishes it); a local VM is restarted with its new script. Answers
    {"server": id, "action": restarted|stopping|reinitialized} or {"error": why}; either
    way an event says so."""
    db = get_database()
    server_id = node["instance_id"]
    with db.transaction() as tx:
        deployment = deployments.get(tx, node["deployment_id"]) if node["deployment_id"] else None
    if deployment is None or deployment["provider"] == "none":
        return {"error": f"server {server_id} was not created by bootfleet; power-cycle it yourself"}
    settings = settings or get_settings()
    try:
        provider = provider_for(deployment, settings)
        user_data = server_user_data(node, settings.base_url or base_url, provider)
        action = provider.reinstall(server_id, user_data, wait)
        answer, message = {"server": server_id, "action": action}, REINSTALLED[action].format(id=server_id)
    except (VpcError, SettingsError) as e:
        answer, message = {"error": str(e)}, f"reinstalling server {server_id} failed: {e}"
    with db.transaction() as tx:
        events.add(tx, "provision" if "action" in answer else "error", message, SOURCE, node_id=node["id"],
                   deployment_id=node["deployment_id"])
    return answer
