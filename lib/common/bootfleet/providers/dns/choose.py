"""The DNS provider the settings name (BOOTFLEET_DNS_PROVIDER)."""

from __future__ import annotations

from bootfleet.errors import SettingsError
from bootfleet.providers.dns.base import DnsProvider
from bootfleet.settings import Settings

# Each backend is imported when chosen: its SDK (ibm-cloud-networking-services, dnspython)
# stays off the import path of the functions and of requests that need no DNS provider.


def make_provider(settings: Settings, owned_ids: set[str] | None = None) -> DnsProvider | None:
    """The configured provider, or None when BOOTFLEET_DNS_PROVIDER is none."""
    kind = settings.dns_provider
    if kind == "none":
        return None
    if kind == "ibm":
        from bootfleet.providers.dns.ibm import IbmDnsProvider

        return IbmDnsProvider(settings, owned_ids)
    if kind == "rfc2136":
        from bootfleet.providers.dns.rfc2136 import Rfc2136Provider

        return Rfc2136Provider(settings)
    raise SettingsError(f"BOOTFLEET_DNS_PROVIDER must be none, ibm or rfc2136, got {kind!r}")
