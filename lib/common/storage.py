"""Where boot images live, and the URLs iPXE fetches them from.

Images never pass through a function: boot scripts point iPXE straight at the
storage's own URL. Locally that is a folder the router serves at /images/.
"""

from __future__ import annotations

from urllib.parse import quote

from .settings import get_settings


def image_url(key: str, base_url: str) -> str:
    """The URL of a kernel or initrd given by key (or already given as a URL)."""
    if key.startswith(("http://", "https://")):
        return key
    settings = get_settings()
    if settings.images_base_url:
        return f"{settings.images_base_url}/{quote(key)}"
    return f"{base_url}/images/{quote(key)}"
