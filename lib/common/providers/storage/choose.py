"""The image storage the settings name (BOOTFLEET_STORAGE), and image URLs for boot scripts."""

from __future__ import annotations

from bootfleet.errors import SettingsError
from bootfleet.providers.storage.base import BACKENDS, Storage
from bootfleet.providers.storage.folder import LocalStorage
from bootfleet.providers.storage.s3 import S3Storage
from bootfleet.settings import Settings


def storage_from_settings(settings: Settings) -> Storage:
    if settings.storage == "s3":
        return S3Storage.from_settings(settings)
    if settings.storage == "local":
        return LocalStorage(settings.images_dir, settings.images_base_url)
    raise SettingsError(f"BOOTFLEET_STORAGE must be one of {', '.join(BACKENDS)}, got {settings.storage!r}")


_cache: dict[tuple, Storage] = {}
_STORAGE_SETTINGS = ("storage", "images_dir", "images_base_url", "s3_endpoint", "s3_public_endpoint", "s3_bucket",
                     "s3_region", "s3_access_key_id", "s3_secret_access_key", "s3_url_ttl")


def get_storage(settings: Settings) -> Storage:
    """The storage the settings name, built once per settings (a boto3 client is not cheap)."""
    key = tuple(getattr(settings, name) for name in _STORAGE_SETTINGS)
    if key not in _cache:
        _cache.clear()
        _cache[key] = storage_from_settings(settings)
    return _cache[key]


def image_url(key: str, base_url: str, settings: Settings) -> str:
    """The URL iPXE fetches a kernel or initrd from, given its key (or already a URL)."""
    if key.startswith(("http://", "https://")):
        return key
    return get_storage(settings).image_url(key, base_url)
