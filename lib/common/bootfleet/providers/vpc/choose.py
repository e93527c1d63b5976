"""The VPC provider a deployment's `provider` and placement ask for."""

from __future__ import annotations

from bootfleet.errors import SettingsError
from bootfleet.providers.vpc.base import Provider, region_of
from bootfleet.settings import Settings


def provider_for(deployment: dict, settings: Settings) -> Provider | None:
    """The provider a deployment's placement asks for (None for `none`)."""
    placement = deployment["placement"] or {}
    if deployment["provider"] == "ibm":
        # imported when chosen: ibm-vpc and its SDK core stay off the functions' cold start
        from bootfleet.providers.vpc.ibm import IbmProvider

        region = placement.get("region") or region_of(placement["zone"])
        return IbmProvider.from_settings(placement.get("kind", "bare_metal"), region, placement.get("vpc"),
                                        settings)
    if deployment["provider"] == "local":
        try:
            from bootfleet.providers.vpc.local import LocalProvider
        except ImportError as e:
            raise SettingsError(f"the local provider is not available here: {e}") from None
        return LocalProvider.from_settings(placement)
    return None
