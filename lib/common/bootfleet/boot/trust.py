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

`whoami` tells a caller what this module concluded about it (GET /boot/whoami, which
`bootfleet doctor` asks through the public domain): the only way to see, on a real Code
Engine project, that the gateway skips Code Engine's own hops (docs/security.md).
"""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=4096)  # a storm asks from few addresses (a gateway's, a NAT's) many times
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
    if _gateway_says(headers, settings):
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


def _gateway_says(headers: Mapping[str, str], settings: Settings) -> bool:
    given = headers.get("X-Bootfleet-Gateway", "")
    return bool(settings.gateway_secret and given
                and hmac.compare_digest(given.encode(), settings.gateway_secret.encode()))


# Where a hop inside a cluster (or a pod's sidecar) has its address: private (RFC 1918, RFC 4193),
# shared (RFC 6598), loopback and link-local. Through the public domain a client's address is its
# public gateway's or floating IP, never one of these.
INTERNAL = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "::1/128", "fc00::/7", "fe80::/10"))


def looks_internal(address: IpAddress | None) -> bool:
    return address is None or inside(address, INTERNAL)


def whoami(peer: str | None, headers: Mapping[str, str], settings: Settings) -> dict:
    """What bootfleet believes about the caller, and what it read that from. No secrets: only
    addresses, the caller's own X-Forwarded-For and the hops that were skipped."""
    address = client_address(peer, headers, settings)
    if _gateway_says(headers, settings):
        via = "gateway"
        chain = headers.get("X-Bootfleet-Forwarded-For", "")
        last_peer = headers.get("X-Bootfleet-Peer", "")
    elif inside(_ip(peer), settings.trusted_proxies):
        via, chain, last_peer = "trusted proxy", headers.get("X-Forwarded-For", ""), peer or ""
    else:
        via, chain, last_peer = "peer", "", peer or ""
    entries = [e.strip() for e in chain.split(",") if e.strip()]
    path = entries + ([last_peer.strip()] if last_peer.strip() else [])
    # The hops skipped: everything right of the entry taken as the client.
    found = max((i for i, e in enumerate(path) if _ip(e) == address), default=len(path) - 1) if address else -1
    return {
        "address": str(address) if address else None,
        "via": via,
        "boot_network": inside(address, settings.boot_networks),
        "looks_internal": looks_internal(address),
        "forwarded_for": entries,
        "skipped": path[found + 1:] if found >= 0 else path,
    }


def client(peer: str | None, headers: Mapping[str, str], settings: Settings) -> Client:
    address = client_address(peer, headers, settings)
    return Client(address, inside(address, settings.boot_networks))
