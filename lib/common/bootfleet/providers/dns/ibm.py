"""The `ibm` DNS provider: IBM Cloud DNS Services through `ibm-cloud-networking-services`."""

from __future__ import annotations

import ipaddress
import logging

from bootfleet.errors import SettingsError
from bootfleet.providers.dns.base import (
    DnsProvider,
    DnsProviderError,
    Found,
    Record,
    fqdn,
    ip_from_reverse,
    reverse_name,
    reverse_zone_of,
    reverse_zones,
)
from bootfleet.providers.ibmcloud import IbmApiError, IbmCloud
from bootfleet.settings import Settings

log = logging.getLogger(__name__)


class IbmDnsError(DnsProviderError, IbmApiError):
    """A DNS Services (or IAM) call failed, with IBM's error code and trace id."""


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
        self.reverse_zones = reverse_zones(settings.dns_reverse_zone)
        # One IAM token (refreshed by the SDK) and one retrier per process, shared with VPC;
        # without an API key only a local endpoint (BOOTFLEET_IBM_DNS_URL) can be used.
        cloud = IbmCloud.from_settings(settings, need_key=service is None and not settings.ibm_dns_url)
        self.retrier = cloud.retrier
        self.service = service or cloud.dns()

    def ptr_zone(self, ip: str, forward_zone: str) -> str | None:
        """DNS Services keeps a PTR in the zone of its A record; BOOTFLEET_DNS_REVERSE_ZONE
        says which IPs get one, as with RFC 2136: those in its reverse zones, none when empty."""
        return forward_zone if reverse_zone_of(ip, self.reverse_zones) else None

    def zone_problem(self, zone: str) -> str | None:
        if zone not in self.zone_ids:
            return f"no DNS Services zone id for {zone} (set BOOTFLEET_IBM_DNS_ZONE_ID={zone}=<zone id>)"
        return None

    def _call(self, what: str, fn, *args, **kwargs):
        return self.retrier.call(f"DNS Services {what}", lambda: fn(*args, **kwargs).get_result(), kind=IbmDnsError)

    def _to_found(self, zone: str, item: dict) -> Found | None:
        rtype = (item.get("type") or item.get("rtype") or "").upper()
        rdata = item.get("rdata") or {}
        name = fqdn(item.get("name") or "")
        if rtype == "PTR" and _is_ip(name):  # DNS Services may list a PTR under its IP
            name = reverse_name(name)
        if name and not name.endswith(zone) and not name.endswith(".arpa"):
            name = f"{name}.{zone}"
        value = {
            "A": rdata.get("ip"), "AAAA": rdata.get("ip"), "CNAME": rdata.get("cname"),
            "PTR": rdata.get("ptrdname"), "TXT": rdata.get("text"),
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
        queries: list[str | None] = [None]
        if names is not None:  # a PTR may be listed under its reverse name or its IP: ask for both
            queries = sorted(names | {ip_from_reverse(n) for n in names if n.endswith(".arpa")})
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
            unique = {f.provider_id: f for f in found if f.record.name in names}  # a record asked for twice
            found = list(unique.values())
        return found

    def _rdata(self, record: Record) -> dict:
        return {"A": {"ip": record.value}, "AAAA": {"ip": record.value}, "CNAME": {"cname": record.value},
                "PTR": {"ptrdname": record.value}}[record.type]

    def create(self, record: Record) -> str:
        """Create the record. A create is not idempotent: one whose answer was lost (a
        timeout, a 5xx after the service had made it) would, sent again, make a duplicate or
        be refused (409), leaving a record nobody owns, a conflict for good. So before each
        retry the name is listed, and a record that is exactly the one wanted (type, name,
        value) is adopted instead of sending the create again."""
        name = ip_from_reverse(record.name) if record.type == "PTR" else record.name
        zone_id = self.zone_ids[record.zone]
        self.counters.writes += 1
        result = self.retrier.call(
            f"DNS Services create {record.type} {record.name}",
            lambda: self.service.create_resource_record(self.instance_id, zone_id, type=record.type, name=name,
                                                        rdata=self._rdata(record), ttl=self.ttl).get_result(),
            before_retry=lambda: self._made(record), kind=IbmDnsError)
        record_id = result if isinstance(result, str) else result["id"]
        self.owned_ids.add(record_id)
        return record_id

    def _made(self, record: Record) -> str | None:
        """The id of a record exactly like `record` (a create whose answer was lost), or None."""
        for found in self.records(record.zone, {record.name}):
            if found.record == record and found.provider_id:
                log.info("DNS create was retried, but the record exists; adopting it",
                         extra={"record": f"{record.type} {record.name}", "id": found.provider_id})
                return found.provider_id
        return None

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
        self.counters.writes += 1
        try:
            self._call(f"delete {found.record.type} {found.record.name}", self.service.delete_resource_record,
                       self.instance_id, self.zone_ids[found.record.zone], found.provider_id)
        except IbmDnsError as e:
            if e.http_status != 404:  # already gone is what we wanted
                raise
        self.owned_ids.discard(found.provider_id)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


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
