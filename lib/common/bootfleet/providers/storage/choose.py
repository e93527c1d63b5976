"""The image storage the settings name (BOOTFLEET_STORAGE), and image URLs for boot scripts."""

from __future__ import annotations

import threading
import time

from bootfleet.errors import SettingsError
from bootfleet.providers.storage.base import BACKENDS, Storage, StorageError
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


_last: tuple = (None, None)  # the settings object asked last and its storage: a node script asks three times


def get_storage(settings: Settings) -> Storage:
    """The storage the settings name, built once per settings (a boto3 client is not cheap)."""
    global _last
    settings_asked, storage = _last
    if settings_asked is settings:
        return storage
    key = tuple(getattr(settings, name) for name in _STORAGE_SETTINGS)
    if key not in _cache:
        _cache.clear()
        _cache[key] = storage_from_settings(settings)
    _last = (settings, _cache[key])
    return _cache[key]


def image_url(key: str, base_url: str, settings: Settings) -> str:
    """The URL iPXE fetches a kernel or initrd from, given its key (or already a URL)."""
    if key.startswith(("http://", "https://")):
        return key
    return get_storage(settings).image_url(key, base_url)


_seen: dict[tuple[str, str], tuple[float, bool]] = {}
_asking: set[tuple[str, str]] = set()
_lock = threading.Lock()
_SEEN_SECONDS = 60.0


def _holds(storage: Storage, key: str) -> bool:
    try:
        return any(image.key == key for image in storage.image_list(key))
    except (StorageError, OSError):
        return True  # a storage that cannot be asked counts as holding it: boot must not fail on a check


def _refresh(storage: Storage, key: str) -> None:
    present = _holds(storage, key)
    with _lock:
        if len(_seen) > 1000:
            _seen.clear()
        _seen[(storage.where, key)] = (time.monotonic(), present)
        _asking.discard((storage.where, key))


def missing_images(settings: Settings, keys: list[str], fresh: bool = False) -> list[str]:
    """The keys among `keys` (URLs are not checked) that the storage does not hold.

    `fresh`: ask the storage now (doctor, saving a profile). Otherwise (boot) answers are
    kept a minute per process, so a boot storm asks once per image; a local folder is asked
    in place, a bucket from a thread of its own (the boot answer never waits on object
    storage; until the first answer, an image counts as present)."""
    storage = get_storage(settings)
    now = time.monotonic()
    missing = []
    for key in keys:
        if key.startswith(("http://", "https://")):
            continue
        where = (storage.where, key)
        cached = _seen.get(where)
        stale = cached is None or now - cached[0] > _SEEN_SECONDS
        if fresh or (stale and settings.storage == "local"):
            _refresh(storage, key)
            cached = _seen.get(where)
        elif stale:
            with _lock:
                start = where not in _asking
                _asking.add(where)
            if start:
                threading.Thread(target=_refresh, args=(storage, key), daemon=True).start()
        if cached is not None and not cached[1]:
            missing.append(key)
    return missing
