"""What boot answers a machine that asks for its script.

Find the node (MAC, then SMBIOS UUID); register it with the discovery profile
if it is unknown and one is configured; installed nodes boot their local disk;
everyone else gets kernel, initrd(s) and arguments carrying a fresh token.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from bootfleet.boot import ipxe
from bootfleet.boot.render import node_context, render
from bootfleet.db import events, nodes, profiles, unknown
from bootfleet.db.connection import Transaction
from bootfleet.errors import RenderError, ValidationError
from bootfleet.providers.storage.choose import image_url, missing_images
from bootfleet.settings import Settings
from bootfleet.stages import LOCAL_BOOT, TERMINAL
from bootfleet.tokens import issue_node_token
from bootfleet.validation import check_safe_text

log = logging.getLogger(__name__)

# Stages at which a boot request (re)starts the install: the node is moved to `booting`.
RESTART_FROM = ("registered", "provisioning", "configuring", "installing")


@dataclass
class BootRequest:
    """What iPXE told us about itself, already validated."""

    macs: list[str] = field(default_factory=list)
    uuid: str | None = None
    serial: str | None = None
    hostname: str | None = None
    arch: str | None = None
    platform: str | None = None
    address: str | None = None  # the client's address, as the boot function sees it

    def query(self) -> dict[str, str]:
        return {
            "mac": self.macs[0] if self.macs else "",
            "uuid": self.uuid or "",
            "serial": self.serial or "",
            "hostname": self.hostname or "",
            "arch": self.arch or "",
            "platform": self.platform or "",
        }


@dataclass
class BootAnswer:
    script: str
    node_id: str | None = None
    outcome: str = ""
    profile: str | None = None
    missing_images: list[str] = field(default_factory=list)
    profile_id: str | None = None


def answer(tx: Transaction, settings: Settings, base: str, req: BootRequest) -> BootAnswer:
    retry_url = ipxe.script_url(base, req.query())
    node = nodes.find(tx, req.macs, req.uuid)
    if node is None:
        node = _discover(tx, settings, req)
        if node is None:
            who = f"MAC {req.macs[0]}" if req.macs else f"UUID {req.uuid}" if req.uuid else "no MAC or UUID"
            message = f"no node is registered with {who}; register it (bootfleet node create --mac ...)"
            if req.macs:  # what an operator sees: bootfleet node unknown, the dashboard
                unknown.record(tx, req.macs[0], req.address, "no node has this MAC")
            return BootAnswer(ipxe.retry(message, retry_url, settings.retry_seconds), None, "unknown")

    result = script_for(tx, settings, base, node, retry_url)
    node_id, stage = node["id"], node["stage"]
    if result.outcome == "install":
        nodes.remember_identity(tx, node, req.uuid, req.serial)
    if result.outcome == "install" and stage in RESTART_FROM:
        note = "" if stage in ("registered", "provisioning") else f" (install restarted; was {stage})"
        nodes.set_stage(tx, node_id, "booting", "boot", f"boot script served, profile {result.profile}{note}",
                        node["deployment_id"], seen=True)
    else:
        nodes.touch(tx, node_id)
    if result.missing_images:
        _report_missing(tx, settings, node, result)
    return result


def script_for(tx: Transaction, settings: Settings, base: str, node: dict, retry_url: str) -> BootAnswer:
    """The script boot answers `node` with, changing nothing: what `answer` serves, and what
    an operator previews (bootfleet node script)."""
    node_id, stage = node["id"], node["stage"]
    wait = settings.retry_seconds
    if stage in LOCAL_BOOT:
        return BootAnswer(ipxe.local_boot(node_id, stage), node_id, "local-disk")
    if stage in TERMINAL:
        message = f"node {node_id} is {stage}; an operator must reinstall it (bootfleet node reinstall {node_id})"
        return BootAnswer(ipxe.retry(message, retry_url, max(wait, 60)), node_id, stage)

    profile, deployment = nodes.boot_plan(tx, node)
    if profile is None:
        message = f"node {node_id} has no profile: give it one, a deployment, or labels a profile selects"
        return BootAnswer(ipxe.retry(message, retry_url, wait), node_id, "no-profile")

    token = issue_node_token(settings.require("token_secret"), node_id, node["token_version"], settings.token_ttl)
    context = node_context(node, profile, deployment, base, token)
    args = render(profile["args"], context, f"profile {profile['name']!r} args")
    try:
        check_safe_text(args, "rendered kernel args", 8192)
    except ValidationError as e:
        raise RenderError(f"profile {profile['name']!r}: {e}") from None
    script = ipxe.node_script(
        node_id,
        profile["name"],
        image_url(profile["kernel"], base, settings),
        [image_url(key, base, settings) for key in profile["initrds"]],
        args,
        retry_url,
        wait,
    )
    missing = missing_images(settings, [profile["kernel"], *profile["initrds"]])
    return BootAnswer(script, node_id, "install", profile["name"], missing, profile["id"])


_reported: dict[str, float] = {}  # profile id -> when this process last said its images are missing


def _report_missing(tx: Transaction, settings: Settings, node: dict, result: BootAnswer) -> None:
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
    events.add(tx, "image-missing", message, "boot", node_id=node["id"], deployment_id=node["deployment_id"])


def _discover(tx: Transaction, settings: Settings, req: BootRequest) -> dict | None:
    """Register an unknown machine under the discovery profile, if one is set."""
    if not settings.discovery_profile or not (req.macs or req.uuid):
        return None
    profile = profiles.find(tx, settings.discovery_profile)
    if profile is None:
        log.error("BOOTFLEET_DISCOVERY_PROFILE names profile %r, which does not exist", settings.discovery_profile)
        return None
    fields = {"profile_id": profile["id"], "macs": req.macs, "smbios_uuid": req.uuid, "serial": req.serial}
    return nodes.create(tx, fields, "boot", "discovered: registered by boot with the discovery profile")
