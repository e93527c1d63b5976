"""A node's hardware inventory (issue 22): the report checked, the `hw.*` labels derived from
it, and a profile's requirements checked against it. Pure functions, no database.

The inventory a node (the bootfleet agent, or any installer) posts to
`POST /status/nodes/<id>/inventory` (docs/images.md):

    {"cpus": 4, "memory_mib": 8192,
     "disks": [{"name": "sda", "size_bytes": 480103981056, "model": "...", "serial": "...",
                "rotational": false, "by_path": "pci-0000:00:1f.2-ata-1"}],
     "nics": [{"mac": "52:54:00:12:34:56", "driver": "virtio_net", "speed_mbps": 1000, "link": true}],
     "firmware": {"mode": "uefi", "secure_boot": false},
     "system": {"vendor": "QEMU", "product": "Standard PC", "serial": ""}}

A profile's `requirements` (all optional):

    {"min_cpus": 2, "min_memory_mib": 2048, "min_disks": 1, "min_disk_bytes": 10737418240,
     "firmware": "uefi", "secure_boot": true, "min_nics": 1, "min_nic_speed_mbps": 10000}

`min_disks` counts the disks of at least `min_disk_bytes` (every disk without it);
`min_nic_speed_mbps` needs that many NICs (`min_nics`, at least one) at that speed or faster.
"""

from __future__ import annotations

import re

from bootfleet.errors import BadRequestError
from bootfleet.validation import ValidationError, normalize_mac

MAX_DISKS = 256
MAX_NICS = 64
_TEXT = re.compile(r"^[\x20-\x7e]{0,256}$")  # printable ASCII, what sysfs and DMI give
_BIG = 2**62

_TOP = {"cpus", "memory_mib", "disks", "nics", "firmware", "system"}
_DISK = {"name", "size_bytes", "model", "serial", "rotational", "by_path"}
_NIC = {"mac", "driver", "speed_mbps", "link", "name"}
_FIRMWARE = {"mode", "secure_boot"}
_SYSTEM = {"vendor", "product", "serial"}

REQUIREMENT_KEYS = {"min_cpus", "min_memory_mib", "min_disks", "min_disk_bytes", "firmware", "secure_boot",
                    "min_nics", "min_nic_speed_mbps"}


def _fail(field: str, what: str):
    raise BadRequestError(f"{field}: {what}")


def _fields(value, allowed: set[str], field: str) -> dict:
    if not isinstance(value, dict):
        _fail(field, "must be an object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        _fail(f"{field}.{str(unknown[0])[:40]}" if field else str(unknown[0])[:40],
              f"unknown field; the fields are: {', '.join(sorted(allowed))}")
    return value


def _int(value, field: str, low: int = 0, required: bool = False) -> int | None:
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= _BIG:
        _fail(field, f"a whole number from {low}" + (" (required)" if required and value is None else ""))
    return value


def _text(value, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or not _TEXT.fullmatch(value):
        _fail(field, "printable text of at most 256 characters")
    return value.strip()


def _bool(value, field: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        _fail(field, "true, false or null")
    return value


def check(data) -> dict:
    """The inventory, checked and normalised (MACs lower case, text trimmed); BadRequestError
    naming the field otherwise."""
    _fields(data, _TOP, "")
    out = {"cpus": _int(data.get("cpus"), "cpus", 1, required=True),
           "memory_mib": _int(data.get("memory_mib"), "memory_mib", 1, required=True)}
    disks = data.get("disks", [])
    if not isinstance(disks, list) or len(disks) > MAX_DISKS:
        _fail("disks", f"a list of at most {MAX_DISKS} disks")
    out["disks"] = []
    for i, disk in enumerate(disks):
        f = f"disks[{i}]"
        _fields(disk, _DISK, f)
        out["disks"].append({
            "name": _text(disk.get("name"), f"{f}.name"),
            "size_bytes": _int(disk.get("size_bytes"), f"{f}.size_bytes", 0, required=True),
            "model": _text(disk.get("model"), f"{f}.model"),
            "serial": _text(disk.get("serial"), f"{f}.serial"),
            "rotational": _bool(disk.get("rotational"), f"{f}.rotational"),
            "by_path": _text(disk.get("by_path"), f"{f}.by_path"),
        })
    nics = data.get("nics", [])
    if not isinstance(nics, list) or len(nics) > MAX_NICS:
        _fail("nics", f"a list of at most {MAX_NICS} NICs")
    out["nics"] = []
    for i, nic in enumerate(nics):
        f = f"nics[{i}]"
        _fields(nic, _NIC, f)
        try:
            mac = normalize_mac(nic.get("mac") if isinstance(nic.get("mac"), str) else "")
        except ValidationError:
            _fail(f"{f}.mac", "a MAC address such as 52:54:00:12:34:56 (required)")
        out["nics"].append({
            "name": _text(nic.get("name"), f"{f}.name"), "mac": mac, "driver": _text(nic.get("driver"), f"{f}.driver"),
            "speed_mbps": _int(nic.get("speed_mbps"), f"{f}.speed_mbps"), "link": _bool(nic.get("link"), f"{f}.link"),
        })
    firmware = _fields(data.get("firmware") or {}, _FIRMWARE, "firmware")
    mode = firmware.get("mode")
    if mode not in ("bios", "uefi", None):
        _fail("firmware.mode", "bios or uefi")
    out["firmware"] = {"mode": mode, "secure_boot": _bool(firmware.get("secure_boot"), "firmware.secure_boot")}
    system = _fields(data.get("system") or {}, _SYSTEM, "system")
    out["system"] = {k: _text(system.get(k), f"system.{k}") for k in sorted(_SYSTEM)}
    return out


def check_requirements(value) -> dict:
    """A profile's requirements, checked (ValueError naming the key: the profile schema's)."""
    if not isinstance(value, dict):
        raise ValueError("an object of requirements")
    unknown = sorted(set(value) - REQUIREMENT_KEYS)
    if unknown:
        raise ValueError(f"unknown requirement {unknown[0][:40]!r}; they are: {', '.join(sorted(REQUIREMENT_KEYS))}")
    for key, v in value.items():
        if key == "firmware":
            if v not in ("bios", "uefi"):
                raise ValueError("firmware: bios or uefi")
        elif key == "secure_boot":
            if not isinstance(v, bool):
                raise ValueError("secure_boot: true or false")
        elif isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _BIG:
            raise ValueError(f"{key}: a whole number from 0")
    return value


def combined(profile: dict | None, deployment: dict | None) -> dict:
    """A node's requirements: its profile's, with its deployment's keys over them."""
    return {**((profile or {}).get("requirements") or {}), **((deployment or {}).get("requirements") or {})}


def _mib(n: int) -> str:
    return f"{n / 1024:.1f} GiB" if n >= 1024 else f"{n} MiB"


def _bytes(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def failures(requirements: dict | None, inv: dict | None) -> list[str]:
    """Every requirement the inventory fails, one sentence each; [] when it passes."""
    req = requirements or {}
    if not req:
        return []
    if not inv:
        return ["no inventory reported yet"]
    reasons = []
    if "min_cpus" in req and inv["cpus"] < req["min_cpus"]:
        reasons.append(f"cpus: {inv['cpus']}, at least {req['min_cpus']} required")
    if "min_memory_mib" in req and inv["memory_mib"] < req["min_memory_mib"]:
        reasons.append(f"memory: {_mib(inv['memory_mib'])}, at least {_mib(req['min_memory_mib'])} required")
    if "min_disks" in req or "min_disk_bytes" in req:
        size = req.get("min_disk_bytes", 0)
        fit = [d for d in inv["disks"] if d["size_bytes"] >= size]
        need = max(req.get("min_disks", 1), 1 if "min_disk_bytes" in req else 0)
        if len(fit) < need:
            of = f" of at least {_bytes(size)}" if size else ""
            reasons.append(f"disks: {len(fit)}{of}, at least {need} required")
    if "firmware" in req and inv["firmware"]["mode"] != req["firmware"]:
        reasons.append(f"firmware: {inv['firmware']['mode'] or 'unknown'}, {req['firmware']} required")
    if req.get("secure_boot") and inv["firmware"]["secure_boot"] is not True:
        reasons.append("secure boot: off or unknown, on required")
    if "min_nics" in req or "min_nic_speed_mbps" in req:
        speed = req.get("min_nic_speed_mbps", 0)
        fit = [n for n in inv["nics"] if (n["speed_mbps"] or 0) >= speed] if speed else inv["nics"]
        need = max(req.get("min_nics", 1), 1 if speed else 0)
        if len(fit) < need:
            of = f" at {speed} Mb/s or faster" if speed else ""
            reasons.append(f"nics: {len(fit)}{of}, at least {need} required")
    return reasons


_LABEL_VALUE = re.compile(r"[^A-Za-z0-9 ._:/+=@-]")


def _value(text: str) -> str:
    return _LABEL_VALUE.sub("-", text).strip()[:253]


def labels(inv: dict) -> dict[str, str]:
    """The `hw.*` labels an inventory gives its node, for label selectors and `node list --label`."""
    out = {
        "hw.cpus": str(inv["cpus"]),
        "hw.memory-gib": str(inv["memory_mib"] // 1024),
        "hw.disks": str(len(inv["disks"])),
        "hw.nics": str(len(inv["nics"])),
    }
    if inv["firmware"]["mode"]:
        out["hw.firmware"] = inv["firmware"]["mode"]
    if inv["firmware"]["secure_boot"] is not None:
        out["hw.secure-boot"] = "on" if inv["firmware"]["secure_boot"] else "off"
    for key in ("vendor", "product"):
        if _value(inv["system"][key]):
            out[f"hw.{key}"] = _value(inv["system"][key])
    return out


def merged_labels(current: dict, inv: dict, limit: int = 64) -> dict[str, str]:
    """The node's own labels with its `hw.*` labels replaced by the inventory's (within the limit)."""
    own = {k: v for k, v in (current or {}).items() if not k.startswith("hw.")}
    for key, value in labels(inv).items():
        if len(own) >= limit:
            break
        own[key] = value
    return own


def summary(inv: dict) -> str:
    total = sum(d["size_bytes"] for d in inv["disks"])
    return (f"{inv['cpus']} CPUs, {_mib(inv['memory_mib'])} memory, {len(inv['disks'])} disks ({_bytes(total)}),"
            f" {len(inv['nics'])} NICs, {inv['firmware']['mode'] or 'unknown'} firmware")
