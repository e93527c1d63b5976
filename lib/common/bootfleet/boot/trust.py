"""Who is asking: the client's address, and whether it is on a boot network.

A node proves who it is with its enrolment secret (a server bootfleet created) or by
asking from inside BOOTFLEET_BOOT_NETWORKS (everyone else). The client's address is
the TCP peer, unless the request came through the configured trusted gateway:
- a peer inside BOOTFLEET_TRUSTED_PROXIES (nginx in front of the router on one host):
  the address is the rightmost X-Forwarded-For entry that is not itself a trusted proxy;
- a request carrying X-Bootfleet-Gateway equal to BOOTFLEET_GATEWAY_SECRET (the Code
  Engine gateway, whose requests reach the function apps through Code Engine's own
  proxies, so the peer says nothing): the address is the gateway's X-Bootfleet-Client.
Anything else in those headers is ignored: a client cannot choose its own address.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from bootfleet.settings import Settings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Client:
    address: IpAddress | None
    trusted: bool  # inside BOOTFLEET_BOOT_NETWORKS

    def __str__(self) -> str:
        return str(self.address) if self.address else "unknown address"


def _ip(text: str | None) -> IpAddress | None:
    if not text:
        return None
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def inside(address: IpAddress | None, networks: tuple | None) -> bool:
    return address is not None and any(address.version == n.version and address in n for n in networks or ())


def client_address(peer: str | None, headers: Mapping[str, str], settings: Settings) -> IpAddress | None:
    """The client's address, by the rules in this module's docstring."""
    if settings.gateway_secret:
        given = headers.get("X-Bootfleet-Gateway", "")
        if given and hmac.compare_digest(given.encode(), settings.gateway_secret.encode()):
            return _ip(headers.get("X-Bootfleet-Client"))
    address = _ip(peer)
    if not inside(address, settings.trusted_proxies):
        return address
    forwarded = headers.get("X-Forwarded-For", "").strip()
    for hop in reversed(forwarded.split(",") if forwarded else []):
        hop_address = _ip(hop)
        if hop_address is None:
            return None  # a garbled chain: believe nothing
        if not inside(hop_address, settings.trusted_proxies):
            return hop_address
        address = hop_address
    return address


def client(peer: str | None, headers: Mapping[str, str], settings: Settings) -> Client:
    address = client_address(peer, headers, settings)
    return Client(address, inside(address, settings.boot_networks))
