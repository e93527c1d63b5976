"""A deployment's DNS spec (`spec.dns.names`) and the names it makes; pure, no I/O.

    spec.dns.names: ["api", {"name": "db", "labels": {"role": "db"}}, {"name": "www", "cname": "api"}]

Each name is `<name>.<deployment>.<zone>`: A/AAAA records over the deployment's ready
nodes (those with all the labels), or one CNAME.
"""

from __future__ import annotations

from bootfleet.providers.dns.base import fqdn
from bootfleet.validation import HOSTNAME_RE, LABEL_KEY_RE


class DnsSpecError(ValueError):
    """A deployment's `spec.dns` is not usable; the message says what to fix."""


def node_fqdn(hostname: str, zone: str) -> str | None:
    """A node's name in `zone`: a short hostname goes under the zone; a full name must be in it (else None)."""
    hostname = fqdn(hostname)
    if hostname == zone or hostname.endswith("." + zone):
        return hostname
    if "." in hostname:
        return None  # a full name in another zone
    return f"{hostname}.{zone}"


def parse_dns_spec(spec: dict, deployment: str, zone: str) -> list[dict]:
    """`spec.dns.names` as a list of {name, type?, labels?, cname?}; raises DnsSpecError."""
    dns_spec = (spec or {}).get("dns")
    if dns_spec is None:
        return []
    if not isinstance(dns_spec, dict) or not isinstance(dns_spec.get("names", []), list):
        raise DnsSpecError("spec.dns must be an object with a list `names`")
    entries = []
    for i, item in enumerate(dns_spec.get("names", [])):
        where = f"spec.dns.names[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise DnsSpecError(f"{where}: a name, or an object with `name` (and `labels` or `cname`)")
        unknown = set(item) - {"name", "labels", "cname"}
        if unknown:
            raise DnsSpecError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        name = f"{fqdn(item['name'])}.{deployment}.{zone}"
        if not HOSTNAME_RE.fullmatch(name):
            raise DnsSpecError(f"{where}: {item['name']!r} does not make a DNS name")
        labels = item.get("labels") or {}
        if not isinstance(labels, dict) or not all(
                isinstance(k, str) and LABEL_KEY_RE.fullmatch(k) and isinstance(v, str) for k, v in labels.items()):
            raise DnsSpecError(f"{where}.labels: an object of label keys and string values")
        cname = item.get("cname")
        if cname is not None:
            if not isinstance(cname, str) or labels:
                raise DnsSpecError(f"{where}.cname: a DNS name, and no labels with it")
            target = fqdn(cname) if "." in cname else f"{fqdn(cname)}.{deployment}.{zone}"
            if not HOSTNAME_RE.fullmatch(target):
                raise DnsSpecError(f"{where}.cname: {cname!r} is not a DNS name")
            cname = target
        entries.append({"name": name, "labels": labels, "cname": cname})
    return entries


def spec_names(spec: dict, deployment: str, zone: str) -> set[str]:
    """The names a deployment's spec asks for; none when it has no zone or the spec is unusable."""
    if not zone:
        return set()
    try:
        return {entry["name"] for entry in parse_dns_spec(spec, deployment, zone)}
    except DnsSpecError:
        return set()
