"""The external systems bootfleet talks to, chosen by settings (one place)."""

from __future__ import annotations


def server_provider():
    """Every server bootfleet owns, across deployments and their providers (cleanup)."""
    from .provision import Fleet

    return Fleet()


def dns_provider():
    """The configured DNS provider (BOOTFLEET_DNS_PROVIDER), or None."""
    from .dnsproviders import make_provider
    from .settings import get_settings

    return make_provider(get_settings())
