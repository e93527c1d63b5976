"""Where a deployment's servers go: checking its placement, and naming its nodes."""

from __future__ import annotations

import re

from bootfleet.errors import SettingsError, ValidationError
from bootfleet.providers.vpc.base import KINDS
from bootfleet.settings import Settings

_IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

IBM_REQUIRED = ("zone", "vpc", "subnet", "profile")
IBM_OPTIONAL = ("region", "kind", "image", "keys", "resource_group")
LOCAL_KEYS = ("memory", "cpus")  # MiB and vCPUs of each local QEMU VM


def check_placement(provider: str, name: str, placement: dict) -> dict:
    """Refuse (400) a placement the provider cannot use, naming the field."""
    if provider == "none":
        return placement
    if not "a" <= name[:1] <= "z" or len(name) > 57:
        raise ValidationError("name", f"{provider} deployments need a name that starts with a letter and has at most"
                                      " 57 characters (servers are named <name>-<index>)")
    if provider == "ibm":
        missing = [k for k in IBM_REQUIRED if not placement.get(k)]
        if missing:
            raise ValidationError("placement", f"the ibm provider needs {', '.join(missing)}"
                                               f" (required: {', '.join(IBM_REQUIRED)})")
        unknown = sorted(set(placement) - set(IBM_REQUIRED) - set(IBM_OPTIONAL))
        if unknown:
            raise ValidationError("placement", f"unknown key(s) {', '.join(unknown)};"
                                               f" allowed: {', '.join(IBM_REQUIRED + IBM_OPTIONAL)}")
        for key, value in placement.items():
            values = value.split(",") if key == "keys" else [value]
            for item in values:
                if not isinstance(item, str) or not _IDENT.fullmatch(item.strip()):
                    raise ValidationError(f"placement.{key}", f"{item[:60]!r} is not a VPC name or identifier")
        if placement.get("kind", "bare_metal") not in KINDS:
            raise ValidationError("placement.kind", f"one of {', '.join(KINDS)}")
        if placement.get("region") and not placement["zone"].startswith(placement["region"] + "-"):
            raise ValidationError("placement.zone", f"zone {placement['zone']} is not in region {placement['region']}")
    elif provider == "local":
        unknown = sorted(set(placement) - set(LOCAL_KEYS))
        if unknown:
            raise ValidationError("placement", f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(LOCAL_KEYS)}")
        for key, value in placement.items():
            if not re.fullmatch(r"[0-9]{1,5}", value) or not 0 < int(value) <= 65536:
                raise ValidationError(f"placement.{key}", f"a whole number, got {value[:20]!r}")
    return placement


def check_provider(provider: str, placement: dict, settings: Settings) -> None:
    """Refuse (400) a deployment whose provider cannot act here (no credentials, no QEMU, ...):
    it could neither make its servers nor, later, delete them."""
    if provider == "none":
        return
    from bootfleet.providers.vpc.base import VpcError
    from bootfleet.providers.vpc.choose import provider_for

    try:
        provider_for({"provider": provider, "placement": placement}, settings)
    except (SettingsError, VpcError) as e:
        raise ValidationError("provider", f"the {provider} provider cannot act here: {e}") from None


def node_name(deployment: str, index: int) -> str:
    return f"{deployment}-{index}"


def node_index(deployment: str, hostname: str | None) -> int | None:
    match = re.fullmatch(rf"{re.escape(deployment)}-(\d+)", hostname or "")
    return int(match.group(1)) if match else None
