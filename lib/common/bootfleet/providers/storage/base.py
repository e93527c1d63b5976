"""Where boot images live, and the URLs iPXE fetches them from.

Images never pass through a function: boot scripts point iPXE straight at the
storage's own URL. Two backends share one small interface (this module), one module each:

- `folder.LocalStorage`: a folder (BOOTFLEET_IMAGES_DIR) that the local router serves
  at `<base>/images/<key>`.
- `s3.S3Storage`: an S3-compatible bucket (IBM Cloud Object Storage with HMAC
  keys, or any S3 endpoint) through boto3; iPXE gets a presigned GET URL
  (SigV4), signed for the endpoint the machines reach (BOOTFLEET_S3_PUBLIC_ENDPOINT).

With BOOTFLEET_IMAGES_BASE_URL set (a CDN in front of the bucket or folder),
every key is served as `<images base URL>/<key>` instead, unsigned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from bootfleet.errors import BadGatewayError, NotFoundError

BACKENDS = ("local", "s3")
# Image keys: path-like names of letters, digits and . _ - + = segments separated by /.
_KEY_RE = re.compile(r"^[A-Za-z0-9._+=-]+(/[A-Za-z0-9._+=-]+)*$")


class StorageError(BadGatewayError):
    """An image operation failed; the message says which image and where."""


class ImageNotFoundError(StorageError):
    """No image under that key."""

    status = NotFoundError.status


@dataclass(frozen=True)
class Image:
    key: str
    size: int
    modified: datetime


def check_image_key(key: str) -> str:
    """A key both backends can hold: `debian/vmlinuz`, not `../x`, `/abs` or `a//b`."""
    if not isinstance(key, str) or not 1 <= len(key) <= 1024:
        raise StorageError(f"image key must be 1 to 1024 characters, got {str(key)[:40]!r}")
    if not _KEY_RE.fullmatch(key) or any(part in (".", "..") for part in key.split("/")):
        raise StorageError(
            f"image key {key[:80]!r}: use letters, digits and . _ - + = in segments separated by /"
            " (no leading /, no . or .. segments)"
        )
    return key


class Storage(Protocol):
    """What boot and `bootfleet images` need from a place that holds images."""

    where: str

    def image_url(self, key: str, base_url: str) -> str: ...

    def image_put(self, key: str, path: Path) -> Image: ...

    def image_list(self, prefix: str = "") -> list[Image]: ...

    def image_delete(self, key: str) -> None: ...
