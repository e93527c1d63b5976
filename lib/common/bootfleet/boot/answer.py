"""What boot answers a machine that asks for its script.

Find the node (MAC, then SMBIOS UUID); register it with the discovery profile if it
is unknown, asks from a boot network and the discovery cap allows. Then the machine
must prove who it is (docs/security.md): a node whose server bootfleet created, or
whose profile or deployment requires it, with its enrolment secret; any other with
a client address inside BOOTFLEET_BOOT_NETWORKS. Without proof every machine gets
the same answer (unknown, wrong secret and untrusted network look alike) and
nothing changes but an event. With it: installed nodes boot their local disk;
everyone else gets kernel, initrd(s) and arguments carrying a fresh token, and a
node not already booting opens a new install (a new token version).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from bootfleet import metrics
from bootfleet.boot import ipxe
from bootfleet.boot.node_config import images_for
from bootfleet.boot.render import node_context, render, render_config
from bootfleet.boot.trust import Client
from bootfleet.db import unknown
from bootfleet.db.boot import step as boot_step
from bootfleet.db.connection import Database, Transaction
from bootfleet.errors import RenderError, ValidationError
from bootfleet.providers.storage.choose import image_url, missing_images
from bootfleet.settings import Settings
from bootfleet.stages import LOCAL_BOOT, TERMINAL
from bootfleet.tokens import hash_secret, issue_node_token
from bootfleet.validation import check_safe_text

log = logging.getLogger(__name__)

# The one answer a machine gets without proof, whatever the reason.
REFUSED = ("no boot script for this machine: it is not registered here, or its enrolment secret is wrong,"
           " or it is not on a boot network")
# How often a refused boot writes an event, per node, in seconds (an unknown MAC: db/unknown.py).
REFUSAL_EVENT_SECONDS = 60


@dataclass
class BootRequest:
    """What iPXE told us about itself, already validated."""

    macs: list[str] = field(default_factory=list)
    uuid: str | None = None
    serial: str | None = None
    hostname: str | None = None
    arch: str | None = None
    platform: str | None = None
    secret: str | None = None  # the enrolment secret, as the chain URL carries it

    def query(self) -> dict[str, str]:
        return {
            "mac": self.macs[0] if self.macs else "",
            "uuid": self.uuid or "",
            "serial": self.serial or "",
            "hostname": self.hostname or "",
            "arch": self.arch or "",
            "platform": self.platform or "",
            "secret": self.secret or "",
        }


@dataclass
class BootAnswer:
    script: str
    node_id: str | None = None
    outcome: str = ""
    profile: str | None = None
    missing_images: list[str] = field(default_factory=list)
    profile_id: str | None = None
    changed: bool = False  # the node moved (an install opened, or it was found installed)


def answer(database: Database, settings: Settings, base: str, req: BootRequest, client: Client) -> BootAnswer:
    """The machine's script. One round trip (db/boot.py) for a known node, and for any machine
    without proof, known or not (the same work: no timing tells them apart); a machine on a
    boot network that a discovery profile may take costs a transaction more."""
    retry_url = ipxe.script_url(base, req.query())
    wait = settings.retry_seconds
    discovers = client.trusted and bool(settings.discovery_profile) and not req.secret
    done = _step(database, req, client, record=not discovers)
    if done is None and not discovers:  # recorded as an unknown machine by that same statement
        return BootAnswer(ipxe.retry(REFUSED, retry_url, wait), None, "unknown")
    if done is None:
        with database.transaction() as tx:
            discovered = _discover(tx, settings, req, client)
            if isinstance(discovered, str) and req.macs:  # what an operator sees: bootfleet node unknown, the dashboard
                unknown.record(tx, req.macs[0], str(client) if client.address else None, discovered)
        if isinstance(discovered, str):
            return BootAnswer(ipxe.retry(REFUSED, retry_url, wait), None, "unknown")
        done = _step(database, req, client)
    if done["why"]:
        return BootAnswer(ipxe.retry(REFUSED, retry_url, wait), None, "refused")
    node = done["node"]
    if done["opens"]:  # the stage change db/boot.py made, counted as db.nodes counts its own
        metrics.stages_moved("booting", [{"from_stage": node["stage"], "in_stage_s": done["in_stage_s"]}])
    if done["installed"]:  # its profile's installed_after: booted again, so installed (docs/installers.md)
        metrics.stages_moved("rebooting", [{"from_stage": node["stage"], "in_stage_s": done["in_stage_s"]}])
        node = {**node, "stage": "rebooting"}
    result = _answer_for(settings, base, node, done["profile"], done["deployment"], done["token_version"], retry_url)
    result.changed = bool(done["opens"] or done["installed"])
    if result.missing_images:
        _report_missing(database, settings, node, result)
    return result


def script_for(tx: Transaction, settings: Settings, base: str, node: dict, retry_url: str) -> BootAnswer:
    """The script boot answers `node` with now, changing nothing: what an operator previews
    (bootfleet node script). The token is of the node's current install."""
    from bootfleet.db import nodes

    profile, deployment = nodes.boot_plan(tx, node)
    return _answer_for(settings, base, node, profile, deployment, node["token_version"], retry_url)


def config_for(tx: Transaction, settings: Settings, base: str, node: dict) -> str | None:
    """The config (Ignition or cloud-init) config would answer `node` with now, with a token of
    its current install, changing nothing; None when its profile renders none. Raises RenderError."""
    from bootfleet.db import nodes

    profile, deployment = nodes.boot_plan(tx, node)
    if profile is None or profile["config_format"] == "none":
        return None
    token = issue_node_token(settings.require("token_secret"), node["id"], node["token_version"], settings.token_ttl)
    return render_config(profile, node_context(node, profile, deployment, base, token, images_for(settings, base)))[0]


def _answer_for(settings: Settings, base: str, node: dict, profile: dict | None, deployment: dict | None,
                token_version: int, retry_url: str) -> BootAnswer:
    node_id, stage, wait = node["id"], node["stage"], settings.retry_seconds
    if stage in LOCAL_BOOT:
        return BootAnswer(ipxe.local_boot(node_id, stage), node_id, "local-disk")
    if stage in TERMINAL:
        message = f"node {node_id} is {stage}; an operator must reinstall it (bootfleet node reinstall {node_id})"
        return BootAnswer(ipxe.retry(message, retry_url, max(wait, 60)), node_id, stage)
    if profile is None:
        message = f"node {node_id} has no profile: give it one, a deployment, or labels a profile selects"
        return BootAnswer(ipxe.retry(message, retry_url, wait), node_id, "no-profile")
    script = install_script(settings, base, node, profile, deployment, token_version, retry_url)
    missing = missing_images(settings, [profile["kernel"], *profile["initrds"]])
    return BootAnswer(script, node_id, "install", profile["name"], missing, profile["id"])


def install_script(settings: Settings, base: str, node: dict, profile: dict, deployment: dict | None,
                   token_version: int, retry_url: str) -> str:
    """The installer's script for a node: kernel, initrds and rendered arguments, with a
    token of this install."""
    token = issue_node_token(settings.require("token_secret"), node["id"], token_version, settings.token_ttl)
    context = node_context(node, profile, deployment, base, token, images_for(settings, base))
    args = render(profile["args"], context, f"profile {profile['name']!r} args")
    try:
        check_safe_text(args, "rendered kernel args", 8192)
    except ValidationError as e:
        raise RenderError(f"profile {profile['name']!r}: {e}") from None
    return ipxe.node_script(
        node["id"],
        profile["name"],
        image_url(profile["kernel"], base, settings),
        [image_url(key, base, settings) for key in profile["initrds"]],
        args,
        retry_url,
        settings.retry_seconds,
    )


_reported: dict[str, float] = {}  # profile id -> when this process last said its images are missing


def _report_missing(database: Database, settings: Settings, node: dict, result: BootAnswer) -> None:
    """An event when a profile names images the storage does not hold (iPXE will fail to load
    them and retry): at most once per profile per BOOTFLEET_UNKNOWN_EVENT_SECONDS in each process,
    so a storm of nodes on a broken profile costs no database work beyond the first."""
    now = time.monotonic()
    last = _reported.get(result.profile_id)
    if last is not None and now - last < settings.unknown_event_seconds:
        return
    if len(_reported) > 1000:
        _reported.clear()
    _reported[result.profile_id] = now
    message = (f"profile {result.profile} names image(s) that are not in storage: {', '.join(result.missing_images)}"
               " (bootfleet images upload ...); its nodes cannot boot")
    from bootfleet.db import events

    with database.transaction() as tx:
        events.add(tx, "image-missing", message, "boot", node_id=node["id"], deployment_id=node["deployment_id"])


def _step(database: Database, req: BootRequest, client: Client, record: bool = False) -> dict | None:
    secret_hash = hash_secret(req.secret) if req.secret else None
    return boot_step(database, req.macs, req.uuid, req.serial, secret_hash, client.trusted,
                     str(client.address) if client.address else None, REFUSAL_EVENT_SECONDS, record)


def _discover(tx: Transaction, settings: Settings, req: BootRequest, client: Client) -> dict | str:
    """Register an unknown machine under the discovery profile, if one is set, the machine
    asks from a boot network, and fewer than BOOTFLEET_DISCOVERY_CAP discovered nodes are
    pending. The new node, or why not (what `bootfleet node unknown` shows)."""
    from bootfleet.db import nodes, profiles

    if not client.trusted:
        return "no node has this MAC; not on a boot network"
    if not settings.discovery_profile or req.secret:
        return "no node has this MAC"
    profile = profiles.find(tx, settings.discovery_profile)
    if profile is None:
        log.error("BOOTFLEET_DISCOVERY_PROFILE names profile %r, which does not exist", settings.discovery_profile)
        return f"no node has this MAC; the discovery profile {settings.discovery_profile!r} does not exist"
    if nodes.pending_discovered(tx) >= settings.discovery_cap:
        return (f"no node has this MAC; discovery cap reached ({settings.discovery_cap} discovered nodes pending;"
                " BOOTFLEET_DISCOVERY_CAP)")
    fields = {"profile_id": profile["id"], "macs": req.macs, "smbios_uuid": req.uuid, "serial": req.serial,
              "discovered": True}
    return nodes.create(tx, fields, "boot", f"discovered from {client}: registered by boot with the discovery profile")
