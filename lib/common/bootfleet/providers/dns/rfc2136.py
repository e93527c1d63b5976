"""The `rfc2136` DNS provider: dynamic updates signed with TSIG (BIND, Knot, PowerDNS), ownership marked by TXT records."""

from __future__ import annotations

import ipaddress
import logging

import dns.flags
import dns.name
import dns.rdatatype
import dns.reversename

from bootfleet.errors import SettingsError
from bootfleet.providers.dns.base import (
    MANAGED_TYPES,
    OWNER_PREFIX,
    DnsProvider,
    DnsProviderError,
    Found,
    Record,
    fqdn,
    reverse_zone_of,
    reverse_zones,
)
from bootfleet.settings import Settings

log = logging.getLogger(__name__)


class Rfc2136Provider(DnsProvider):
    """Dynamic updates with TSIG to a standard DNS server; ownership by TXT marker."""

    kind = "rfc2136"
    batches_by_name = True

    def __init__(self, settings: Settings):
        super().__init__(settings)
        import dns.tsig
        import dns.tsigkeyring

        if not settings.dns_server:
            raise SettingsError("BOOTFLEET_DNS_SERVER is not set (the primary server that takes updates)")
        try:
            self.server = str(ipaddress.ip_address(settings.dns_server))
        except ValueError:
            raise SettingsError(f"BOOTFLEET_DNS_SERVER must be an IP address, got {settings.dns_server!r}") from None
        self.port = settings.dns_port
        self.keyring = None
        self.keyname = None
        self.algorithm = dns.tsig.default_algorithm
        if settings.dns_tsig_name:
            if not settings.dns_tsig_secret:
                raise SettingsError("BOOTFLEET_DNS_TSIG_SECRET is not set (the base64 secret of BOOTFLEET_DNS_TSIG_NAME)")
            try:
                self.keyring = dns.tsigkeyring.from_text({settings.dns_tsig_name: settings.dns_tsig_secret})
            except Exception as e:  # noqa: BLE001 - binascii errors and the like
                raise SettingsError(f"BOOTFLEET_DNS_TSIG_SECRET is not valid base64: {e}") from None
            self.keyname = dns.name.from_text(settings.dns_tsig_name)
            self.algorithm = dns.name.from_text(settings.dns_tsig_algorithm)
        self.reverse_zones = reverse_zones(settings.dns_reverse_zone)
        self.owner = settings.dns_owner
        self.marker = f"heritage=bootfleet,owner={self.owner}"
        self.timeout = 5.0

    def ptr_zone(self, ip: str, forward_zone: str) -> str | None:
        return reverse_zone_of(ip, self.reverse_zones)

    # reading

    def _owner_of(self, texts: list[str]) -> str | None:
        for text in texts:
            parts = dict(p.partition("=")[::2] for p in text.split(","))
            if parts.get("heritage") == "bootfleet":
                return parts.get("owner")
        return None

    def _collect(self, zone: str, rrsets) -> list[Found]:
        """Found records from (name, rdtype name, [values], ttl), markers turned into ownership."""
        owners: dict[str, str | None] = {}
        plain = []
        for name, rtype, values, ttl in rrsets:
            if name.startswith(OWNER_PREFIX) and rtype == "TXT":
                owners[name[len(OWNER_PREFIX):]] = self._owner_of(values)
            elif rtype not in ("SOA", "NS", "RRSIG", "NSEC", "NSEC3", "DNSKEY") or name != zone:
                plain.append((name, rtype, values, ttl))
        found = []
        for name, rtype, values, ttl in plain:
            owned = owners.get(name) == self.owner and rtype in MANAGED_TYPES
            for value in values:
                found.append(Found(Record(zone, name, rtype, value), owned=owned, ttl=ttl))
        return found

    @staticmethod
    def _value(rdata) -> str:
        rtype = dns.rdatatype.to_text(rdata.rdtype)
        if rtype in ("A", "AAAA"):
            return str(ipaddress.ip_address(rdata.address))
        if rtype in ("CNAME", "PTR"):
            return fqdn(rdata.target.to_text())
        if rtype == "TXT":
            return b"".join(rdata.strings).decode(errors="replace")
        return rdata.to_text()

    def records(self, zone: str, names: set[str] | None = None) -> list[Found]:
        if names is None:
            return self._collect(zone, self._transfer(zone))
        rrsets = []
        for name in sorted(names):
            for rtype in (*MANAGED_TYPES, "TXT"):
                rrsets += self._query(name, rtype)
            rrsets += self._query(OWNER_PREFIX + name, "TXT")
        return self._collect(zone, rrsets)

    def _transfer(self, zone: str):
        """The whole zone by AXFR (TSIG-signed), as (name, type, [values], ttl)."""
        import dns.query

        self.counters.reads += 1
        out = []
        try:
            for message in dns.query.xfr(self.server, zone, port=self.port, timeout=self.timeout, lifetime=120, relativize=False,
                                         keyring=self.keyring, keyname=self.keyname, keyalgorithm=self.algorithm):
                for rrset in message.answer:
                    rtype = dns.rdatatype.to_text(rrset.rdtype)
                    out.append((fqdn(rrset.name.to_text()), rtype, [self._value(r) for r in rrset], rrset.ttl))
        except Exception as e:  # noqa: BLE001 - TransferError, timeouts, refused connections
            raise DnsProviderError(f"zone transfer of {zone} from {self.server}:{self.port} failed: {e}") from None
        # an AXFR starts and ends with the SOA; a name can come in several messages
        merged: dict[tuple[str, str], tuple[str, str, list[str], int]] = {}
        for name, rtype, values, ttl in out:
            key = (name, rtype)
            if key in merged:
                merged[key][2].extend(v for v in values if v not in merged[key][2])
            else:
                merged[key] = (name, rtype, list(values), ttl)
        return list(merged.values())

    def _query(self, name: str, rtype: str):
        import dns.message
        import dns.query
        import dns.rcode

        self.counters.reads += 1
        query = dns.message.make_query(name, rtype)
        query.flags &= ~dns.flags.RD
        try:
            response = dns.query.tcp(query, self.server, port=self.port, timeout=self.timeout)
        except Exception as e:  # noqa: BLE001
            raise DnsProviderError(f"query {name} {rtype} at {self.server}:{self.port} failed: {e}") from None
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise DnsProviderError(f"query {name} {rtype}: {dns.rcode.to_text(response.rcode())}")
        out = []
        for rrset in response.answer:
            if dns.rdatatype.to_text(rrset.rdtype) == rtype:
                out.append((fqdn(rrset.name.to_text()), rtype, [self._value(r) for r in rrset], rrset.ttl))
        return out

    # writing

    def _owned(self, name: str) -> bool:
        return self._owner_of([v for _, _, vs, _ in self._query(OWNER_PREFIX + name, "TXT") for v in vs]) == self.owner

    def create(self, record: Record) -> None:
        self.change_name(record.zone, record.name, [], [record], owned_before=self._owned(record.name))

    def update(self, found: Found, record: Record) -> None:
        self.change_name(record.zone, record.name, [found], [record], owned_before=True)

    def delete(self, found: Found) -> None:
        left = [f for f in self.records(found.record.zone, {found.record.name}) if f.owned and f.record != found.record]
        self.change_name(found.record.zone, found.record.name, [found], [], owned_before=True, left_after=len(left))

    def change_name(self, zone: str, name: str, deletes: list[Found], creates: list[Record],
                    owned_before: bool = True, left_after: int | None = None) -> dict[Record, None]:
        """All changes at one name in one UPDATE message.

        A name bootfleet already owns must still carry its marker (prerequisite); a new
        name must be empty and unclaimed. When no owned record is left, the marker goes."""
        import dns.query
        import dns.rcode
        import dns.update

        update = dns.update.UpdateMessage(zone + ".", keyring=self.keyring, keyname=self.keyname,
                                          keyalgorithm=self.algorithm)
        marker_name = OWNER_PREFIX + name + "."
        marker_text = f'"{self.marker}"'
        if owned_before:
            update.present(marker_name, "TXT", marker_text)
        else:
            update.absent(name + ".")
            update.absent(marker_name)
        for found in deletes:
            update.delete(name + ".", found.record.type, self._text(found.record))
        for record in creates:
            update.add(name + ".", self.ttl, record.type, self._text(record))
        if creates and not owned_before:
            update.add(marker_name, self.ttl, "TXT", marker_text)
        if owned_before and left_after == 0:
            update.delete(marker_name, "TXT")
        self.counters.writes += 1
        try:
            response = dns.query.tcp(update, self.server, port=self.port, timeout=self.timeout)
        except Exception as e:  # noqa: BLE001
            raise DnsProviderError(f"update of {name} at {self.server}:{self.port} failed: {e}") from None
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            reason = {
                dns.rcode.YXDOMAIN: "the name is in use by records bootfleet did not create",
                dns.rcode.NXRRSET: "the name no longer carries bootfleet's owner marker",
                dns.rcode.REFUSED: "the server refused the update: check allow-update and the TSIG key",
                dns.rcode.NOTAUTH: "the server is not authoritative for the zone, or the TSIG key is wrong",
                dns.rcode.NOTZONE: "the name is not in the zone",
            }.get(rcode, "")
            raise DnsProviderError(f"update of {name} refused: {dns.rcode.to_text(rcode)}"
                                   + (f" ({reason})" if reason else ""))
        return {record: None for record in creates}

    @staticmethod
    def _text(record: Record) -> str:
        return record.value + "." if record.type in ("CNAME", "PTR") else record.value
