"""DNS providers: where bootfleet's records live, behind one small interface.

    provider.records(zone, names)      what the zone holds (all of it, or only these names),
                                       each record marked owned or not
    provider.create(record)            -> the provider's id for it
    provider.update(found, record)     -> the new id
    provider.delete(found)
    provider.change_name(zone, name, deletes, creates)   several changes at one name

Two backends, one module each:

- `ibm.IbmDnsProvider`: IBM Cloud DNS Services through `ibm-cloud-networking-services`
  `DnsSvcsV1`. Every record has an id (`A:<uuid>`); bootfleet owns exactly the ids it
  created, which it keeps in the `dns_record` table. A PTR is created with the IP as its
  name and needs its A record first.
- `rfc2136.Rfc2136Provider`: dynamic updates (RFC 2136) signed with TSIG, for BIND, Knot,
  PowerDNS or any standard server. DNS has no record ids, so ownership is a TXT record
  next to each name bootfleet manages, the way external-dns does it:
  `_bootfleet-owner.<name> TXT "heritage=bootfleet,owner=<BOOTFLEET_DNS_OWNER>"`.
  All changes at one name go in one UPDATE message whose prerequisites check that
  marker, so a name someone else took in the meantime is refused by the server itself.
  Zones are read with a TSIG-signed zone transfer (AXFR); single names with queries.

Names are fully qualified, lower case, without the trailing dot.
"""
from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from bootfleet.errors import BadGatewayError
from bootfleet.settings import Settings

log = logging.getLogger(__name__)

MANAGED_TYPES = ("A", "AAAA", "CNAME", "PTR")
OWNER_PREFIX = "_bootfleet-owner."


class DnsProviderError(BadGatewayError):
    """The DNS provider refused or could not be reached; the message says which and why."""


@dataclass(frozen=True, order=True)
class Record:
    zone: str
    name: str
    type: str
    value: str


@dataclass
class Found:
    """A record the provider holds."""

    record: Record
    owned: bool
    provider_id: str | None = None
    ttl: int | None = None


@dataclass
class Counters:
    reads: int = 0
    writes: int = 0


def fqdn(name: str) -> str:
    return name.strip().rstrip(".").lower()


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer


def reverse_zones(setting: str | None) -> list[str]:
    """BOOTFLEET_DNS_REVERSE_ZONE: the reverse zones PTRs are kept for, comma separated.
    Empty: no PTRs, whichever the provider."""
    return [fqdn(z) for z in (setting or "").split(",") if z.strip()]


def reverse_zone_of(ip: str, zones: list[str]) -> str | None:
    """The most specific of `zones` that holds the IP's reverse name, or None."""
    name = reverse_name(ip)
    matches = [z for z in zones if name == z or name.endswith("." + z)]
    return max(matches, key=len) if matches else None


def address_type(ip: str) -> str:
    return "AAAA" if ipaddress.ip_address(ip).version == 6 else "A"


def ip_from_reverse(name: str) -> str:
    import dns.name  # dnspython only where it is used: off the functions' cold start
    import dns.reversename

    return dns.reversename.to_address(dns.name.from_text(name))


class DnsProvider:
    kind = "none"
    batches_by_name = False  # True: change_name() makes one write for all changes at a name

    def __init__(self, settings: Settings):
        self.settings = settings
        self.ttl = settings.dns_ttl
        self.counters = Counters()

    def ptr_zone(self, ip: str, forward_zone: str) -> str | None:
        """The zone that holds the PTR record for this IP, or None if this provider has none."""
        raise NotImplementedError

    def zone_problem(self, zone: str) -> str | None:
        """Why records in this zone cannot be managed (missing configuration), or None."""
        return None

    def records(self, zone: str, names: set[str] | None = None) -> list[Found]:
        raise NotImplementedError

    def create(self, record: Record) -> str | None:
        raise NotImplementedError

    def update(self, found: Found, record: Record) -> str | None:
        self.delete(found)
        return self.create(record)

    def delete(self, found: Found) -> None:
        raise NotImplementedError

    def change_name(self, zone: str, name: str, deletes: list[Found], creates: list[Record],
                    owned_before: bool = True, left_after: int | None = None) -> dict[Record, str | None]:
        """Apply several changes at one name; returns the provider ids of the created records.
        `owned_before`: bootfleet owned the name already; `left_after`: owned records that stay."""
        for found in deletes:
            self.delete(found)
        return {record: self.create(record) for record in creates}


# --- IBM Cloud DNS Services ----------------------------------------------------------
