"""DNS providers: where bootfleet's records live, behind one small interface.

    provider.records(zone, names)      what the zone holds (all of it, or only these names),
                                       each record marked owned or not
    provider.create(record)            -> the provider's id for it
    provider.update(found, record)     -> the new id
    provider.delete(found)
    provider.change_name(zone, name, deletes, creates)   several changes at one name

Two real implementations:

- `IbmDnsProvider`: IBM Cloud DNS Services through `ibm-cloud-networking-services`
  `DnsSvcsV1`. Every record has an id (`A:<uuid>`); bootfleet owns exactly the ids it
  created, which it keeps in the `dns_record` table. A PTR is created with the IP as its
  name and needs its A record first.
- `Rfc2136Provider`: dynamic updates (RFC 2136) signed with TSIG, for BIND, Knot,
  PowerDNS or any standard server. DNS has no record ids, so ownership is a TXT record
  next to each name bootfleet manages, the way external-dns does it:
  `_bootfleet-owner.<name> TXT "heritage=bootfleet,owner=<BOOTFLEET_DNS_OWNER>"`.
  All changes at one name go in one UPDATE message whose prerequisites check that
  marker, so a name someone else took in the meantime is refused by the server itself.
  Zones are read with a TSIG-signed zone transfer (AXFR); single names with queries.

Names are fully qualified, lower case, without the trailing dot.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from dataclasses import dataclass

import dns.flags
import dns.name
import dns.rdatatype
import dns.reversename

from .settings import Settings, SettingsError

log = logging.getLogger(__name__)

MANAGED_TYPES = ("A", "AAAA", "CNAME", "PTR")
OWNER_PREFIX = "_bootfleet-owner."


class DnsProviderError(Exception):
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


def address_type(ip: str) -> str:
    return "AAAA" if ipaddress.ip_address(ip).version == 6 else "A"


def _ip_from_reverse(name: str) -> str:
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


@functools.lru_cache(maxsize=4)
def _ibm_service(api_key: str | None, iam_url: str | None, dns_url: str | None):
    from ibm_cloud_networking_services import DnsSvcsV1
    from ibm_cloud_sdk_core.authenticators import IAMAuthenticator, NoAuthAuthenticator

    if api_key:
        authenticator = IAMAuthenticator(api_key, url=iam_url or None)
        authenticator.token_manager.http_config = {"timeout": 15}  # the SDK waits 60 s for IAM
    elif dns_url:
        authenticator = NoAuthAuthenticator()  # a local or test endpoint without IAM
    else:
        raise SettingsError("BOOTFLEET_IBMCLOUD_API_KEY is not set (an IAM API key allowed to edit DNS Services)")
    service = DnsSvcsV1(authenticator=authenticator)
    if dns_url:
        service.set_service_url(dns_url)
    service.set_http_config({"timeout": 15})
    return service


class IbmDnsProvider(DnsProvider):
    """IBM Cloud DNS Services (private DNS for VPC) through the real SDK."""

    kind = "ibm"
    PAGE_SIZE = 200  # the API's default page; paging follows offset/limit until total_count

    def __init__(self, settings: Settings, owned_ids: set[str] | None = None, service=None):
        super().__init__(settings)
        self.instance_id = settings.ibm_dns_instance_id
        if not self.instance_id:
            raise SettingsError("BOOTFLEET_IBM_DNS_INSTANCE_ID is not set (the DNS Services instance GUID)")
        self.zone_ids = parse_zone_ids(settings.ibm_dns_zone_id, settings.dns_zone)
        self.owned_ids = owned_ids if owned_ids is not None else set()
        self.service = service or self._service(settings)

    @staticmethod
    def _service(settings: Settings):
        # one client (and so one IAM token, refreshed by the SDK) per process and settings
        return _ibm_service(settings.ibmcloud_api_key, settings.ibm_iam_url, settings.ibm_dns_url)

    def ptr_zone(self, ip: str, forward_zone: str) -> str | None:
        return forward_zone  # DNS Services keeps a PTR in the zone of its A record

    def zone_problem(self, zone: str) -> str | None:
        if zone not in self.zone_ids:
            return f"no DNS Services zone id for {zone} (set BOOTFLEET_IBM_DNS_ZONE_ID={zone}=<zone id>)"
        return None

    def _call(self, what: str, fn, *args, **kwargs):
        from ibm_cloud_sdk_core import ApiException

        try:
            return fn(*args, **kwargs).get_result()
        except ApiException as e:
            raise DnsProviderError(f"DNS Services {what}: {e.status_code} {e.message}") from None
        except Exception as e:  # noqa: BLE001 - connection errors, timeouts
            raise DnsProviderError(f"DNS Services {what}: {type(e).__name__}: {e}") from None

    def _to_found(self, zone: str, item: dict) -> Found | None:
        rtype = (item.get("type") or item.get("rtype") or "").upper()
        rdata = item.get("rdata") or {}
        name = fqdn(item.get("name") or "")
        if name and not name.endswith(zone) and not name.endswith(".arpa"):
            name = f"{name}.{zone}"
        value = {
            "A": rdata.get("ip"), "AAAA": rdata.get("ip"), "CNAME": rdata.get("cname"),
            "PTR": rdata.get("ptrdname"), "TXT": rdata.get("txtdata"),
        }.get(rtype)
        if value is None:
            value = ",".join(f"{k}={v}" for k, v in sorted(rdata.items()))
        elif rtype in ("A", "AAAA"):
            value = str(ipaddress.ip_address(value))
        elif rtype in ("CNAME", "PTR"):
            value = fqdn(value)
        record = Record(zone, name, rtype, value)
        return Found(record, owned=item.get("id") in self.owned_ids, provider_id=item.get("id"), ttl=item.get("ttl"))

    def records(self, zone: str, names: set[str] | None = None) -> list[Found]:
        zone_id = self.zone_ids[zone]
        queries = [None] if names is None else sorted(names)
        found = []
        for name in queries:
            offset = 0
            while True:
                self.counters.reads += 1
                page = self._call(
                    f"list records in {zone}", self.service.list_resource_records,
                    self.instance_id, zone_id, offset=offset, limit=self.PAGE_SIZE, name=name,
                )
                items = page.get("resource_records") or []
                found += [f for f in (self._to_found(zone, i) for i in items) if f]
                offset += len(items)
                if not items or offset >= int(page.get("total_count", 0)):
                    break
        if names is not None:
            found = [f for f in found if f.record.name in names]
        return found

    def _rdata(self, record: Record) -> dict:
        return {"A": {"ip": record.value}, "AAAA": {"ip": record.value}, "CNAME": {"cname": record.value},
                "PTR": {"ptrdname": record.value}}[record.type]

    def create(self, record: Record) -> str:
        name = _ip_from_reverse(record.name) if record.type == "PTR" else record.name
        self.counters.writes += 1
        result = self._call(
            f"create {record.type} {record.name}", self.service.create_resource_record,
            self.instance_id, self.zone_ids[record.zone], type=record.type, name=name,
            rdata=self._rdata(record), ttl=self.ttl,
        )
        self.owned_ids.add(result["id"])
        return result["id"]

    def update(self, found: Found, record: Record) -> str:
        if record.type == "PTR" or found.record.type != record.type:
            return super().update(found, record)
        self.counters.writes += 1
        result = self._call(
            f"update {record.type} {record.name}", self.service.update_resource_record,
            self.instance_id, self.zone_ids[record.zone], found.provider_id,
            name=record.name, rdata=self._rdata(record), ttl=self.ttl,
        )
        return result.get("id", found.provider_id)

    def delete(self, found: Found) -> None:
        from ibm_cloud_sdk_core import ApiException

        self.counters.writes += 1
        try:
            self.service.delete_resource_record(self.instance_id, self.zone_ids[found.record.zone], found.provider_id)
        except ApiException as e:
            if e.status_code != 404:  # already gone is what we wanted
                raise DnsProviderError(f"DNS Services delete {found.record.type} {found.record.name}: {e.status_code} {e.message}") from None
        except Exception as e:  # noqa: BLE001
            raise DnsProviderError(f"DNS Services delete {found.record.name}: {type(e).__name__}: {e}") from None
        self.owned_ids.discard(found.provider_id)


def parse_zone_ids(raw: str | None, default_zone: str | None) -> dict[str, str]:
    """`example.com=<id>,other.org=<id>`, or one bare id for BOOTFLEET_DNS_ZONE."""
    ids: dict[str, str] = {}
    for item in (raw or "").split(","):
        item = item.strip()
        if not item:
            continue
        zone, sep, zone_id = item.partition("=")
        if sep:
            ids[fqdn(zone)] = zone_id.strip()
        elif default_zone:
            ids[fqdn(default_zone)] = item
        else:
            raise SettingsError("BOOTFLEET_IBM_DNS_ZONE_ID: a bare zone id needs BOOTFLEET_DNS_ZONE; or write zone=<id>")
    return ids


# --- RFC 2136 ------------------------------------------------------------------------


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
        self.reverse_zones = [fqdn(z) for z in (settings.dns_reverse_zone or "").split(",") if z.strip()]
        self.owner = settings.dns_owner
        self.marker = f"heritage=bootfleet,owner={self.owner}"
        self.timeout = 5.0

    def ptr_zone(self, ip: str, forward_zone: str) -> str | None:
        name = reverse_name(ip)
        matches = [z for z in self.reverse_zones if name == z or name.endswith("." + z)]
        return max(matches, key=len) if matches else None

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


def make_provider(settings: Settings, owned_ids: set[str] | None = None) -> DnsProvider | None:
    """The configured provider, or None when BOOTFLEET_DNS_PROVIDER is none."""
    kind = settings.dns_provider
    if kind == "none":
        return None
    if kind == "ibm":
        return IbmDnsProvider(settings, owned_ids)
    if kind == "rfc2136":
        return Rfc2136Provider(settings)
    raise SettingsError(f"BOOTFLEET_DNS_PROVIDER must be none, ibm or rfc2136, got {kind!r}")
