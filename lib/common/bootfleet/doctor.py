"""`bootfleet doctor`, the server's half: is everything this installation uses in place?

Each check is {"name", "ok", "detail"}; the CLI adds its own (the gateway reachable from
where the operator is, the two clocks) and prints them all.
"""

from __future__ import annotations

from bootfleet.db import deployments, profiles
from bootfleet.db.connection import Database
from bootfleet.db.migrate import pending
from bootfleet.errors import BootfleetError
from bootfleet.providers.storage.choose import missing_images
from bootfleet.settings import Settings

MAX_SKEW = 5.0  # seconds between this server's clock and the database's that tokens and timeouts tolerate


def _check(name: str, ok: bool, detail: str) -> dict:
    return {"name": name, "ok": ok, "detail": detail}


def client_address_check(seen: dict) -> dict:
    """What GET /boot/whoami answered the operator's machine. Through the gateway a client is
    never at an internal address: if it seems to be, the gateway took one of Code Engine's
    own hops for the client, and every node will too (docs/security.md)."""
    address = seen.get("address") or "no address"
    skipped = ", ".join(seen.get("skipped") or []) or "none"
    where = "inside BOOTFLEET_BOOT_NETWORKS" if seen.get("boot_network") else "not in BOOTFLEET_BOOT_NETWORKS"
    if seen.get("via") == "gateway" and seen.get("looks_internal"):
        return _check("client address", False,
                      f"bootfleet sees this machine as {address}, an internal address (hops skipped: {skipped});"
                      " the gateway takes one of Code Engine's own hops for the client: add its range to the"
                      " Terraform variable gateway_trusted_hops and apply (docs/deployment.md, first apply)")
    return _check("client address", True,
                  f"bootfleet sees this machine as {address} via the {seen.get('via')} ({where};"
                  f" hops skipped: {skipped})")


def server_checks(database: Database, settings: Settings) -> list[dict]:
    try:
        database.ping()
        waiting = pending(database)
    except BootfleetError as e:
        return [_check("database", False, f"cannot reach the database: {e.public}")]
    checks = [_check("database", True, "reachable"),
              _check("migrations", not waiting,
                     f"not applied: {', '.join(waiting)} (bootfleet migrate)" if waiting else "all applied")]
    with database.transaction() as tx:
        items, _ = profiles.listing(tx, 1000, 0)
        used = deployments.in_use(tx)
        skew = deployments.clock_skew(tx)
    checks.append(_check("clock", abs(skew) <= MAX_SKEW,
                         f"the database's clock is {skew:+.1f} s from the server's (at most {MAX_SKEW:.0f} s)"))
    checks += _image_checks(settings, items)
    checks += _provider_checks(settings, used)
    return checks


def _image_checks(settings: Settings, items: list[dict]) -> list[dict]:
    if not items:
        return [_check("images", True, "no profiles yet")]
    checks = []
    for profile in items:
        try:
            missing = missing_images(settings, [profile["kernel"], *profile["initrds"]], fresh=True)
        except BootfleetError as e:
            checks.append(_check(f"images of {profile['name']}", False, f"cannot read the storage: {e.public}"))
            continue
        detail = (f"missing in storage: {', '.join(missing)} (bootfleet images upload ...)" if missing
                  else "kernel and initrds present")
        checks.append(_check(f"images of {profile['name']}", not missing, detail))
    return checks


def _provider_checks(settings: Settings, used: list[dict]) -> list[dict]:
    providers = {row["provider"] for row in used}
    zoned = sum(row["n"] for row in used if row["zoned"])
    checks = []
    if "ibm" in providers:
        checks.append(_check("provider ibm", bool(settings.ibmcloud_api_key),
                             "API key set" if settings.ibmcloud_api_key else "BOOTFLEET_IBMCLOUD_API_KEY is not set"))
    if "local" in providers:
        from bootfleet.providers.vpc.qemu import QemuUnavailableError, find_tools

        try:
            find_tools()
            checks.append(_check("provider local", True, "QEMU, iPXE and busybox found"))
        except QemuUnavailableError as e:
            checks.append(_check("provider local", False, str(e)))
    if zoned:
        checks.append(_dns_check(settings, zoned))
    if not checks:
        checks.append(_check("providers", True, "no deployment uses a provider or a DNS zone"))
    return checks


def _dns_check(settings: Settings, zoned: int) -> dict:
    needs = {"ibm": ("ibmcloud_api_key", "ibm_dns_instance_id"), "rfc2136": ("dns_server",)}
    provider = settings.dns_provider
    if provider not in needs:
        return _check("dns", False, f"{zoned} deployment(s) have a DNS zone but BOOTFLEET_DNS_PROVIDER is {provider}")
    unset = [f"BOOTFLEET_{name.upper()}" for name in needs[provider] if not getattr(settings, name)]
    return _check("dns", not unset, f"{provider}: " + (f"not set: {', '.join(unset)}" if unset else "settings present"))
