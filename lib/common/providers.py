"""The external systems bootfleet talks to, chosen by settings (one place)."""

from __future__ import annotations


def server_provider():
    """The VPC provider for cleanup, or None when none is configured."""
    return None


def record_provider():
    """The DNS records bootfleet owns, for cleanup's orphan sweep, or None."""
    return None
