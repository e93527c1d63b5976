"""Where boot images live, and the URLs iPXE fetches them from.

Images never pass through a function: boot scripts point iPXE straight at the
storage's own URL. Two backends share one small interface:

- `LocalStorage`: a folder (BOOTFLEET_IMAGES_DIR) that the local router serves
  at `<base>/images/<key>`.
- `S3Storage`: an S3-compatible bucket (IBM Cloud Object Storage with HMAC
  keys, or any S3 endpoint) through boto3; iPXE gets a presigned GET URL
  (SigV4), signed for the endpoint the machines reach (BOOTFLEET_S3_PUBLIC_ENDPOINT).

With BOOTFLEET_IMAGES_BASE_URL set (a CDN in front of the bucket or folder),
every key is served as `<images base URL>/<key>` instead, unsigned.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from .settings import Settings, SettingsError, get_settings

BACKENDS = ("local", "s3")
# Image keys: path-like names of letters, digits and . _ - + = segments separated by /.
_KEY_RE = re.compile(r"^[A-Za-z0-9._+=-]+(/[A-Za-z0-9._+=-]+)*$")


class StorageError(Exception):
    """An image operation failed; the message says which image and where."""


class ImageNotFoundError(StorageError):
    pass


@dataclass(frozen=True)
class Image:
    key: str
    size: int
    modified: datetime


def check_image_key(key: str) -> str:
    """A key both backends can hold: `debian/vmlinuz`, not `../x`, `/abs` or `a//b`."""
    if not isinstance(key, str) or not 1 <= len(key) <= 1024:
        raise StorageError(f"image key must be 1 to 1024 characters, got {str(key)[:40]!r}")
    if not _KEY_RE.match(key) or any(part in (".", "..") for part in key.split("/")):
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


class LocalStorage:
    """A folder on this machine; the router serves it at /images/."""

    def __init__(self, folder: str | Path, public_base_url: str | None = None):
        self.folder = Path(folder).resolve()
        self.public_base_url = public_base_url
        self.where = f"folder {self.folder}"

    def _path(self, key: str) -> Path:
        return self.folder / check_image_key(key)

    def image_url(self, key: str, base_url: str) -> str:
        if self.public_base_url:
            return f"{self.public_base_url}/{quote(key)}"
        return f"{base_url}/images/{quote(key)}"

    def image_put(self, key: str, path: Path) -> Image:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename, so a node never fetches half a kernel.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                shutil.copyfileobj(src, out, 1024 * 1024)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self._image(target)

    def image_list(self, prefix: str = "") -> list[Image]:
        if not self.folder.is_dir():
            return []
        images = []
        for path in self.folder.rglob("*"):
            if path.is_file() and not path.name.startswith(".upload-"):
                image = self._image(path)
                if image.key.startswith(prefix):
                    images.append(image)
        return sorted(images, key=lambda i: i.key)

    def image_delete(self, key: str) -> None:
        path = self._path(key)
        if not path.is_file():
            raise ImageNotFoundError(f"no image {key!r} in {self.where}")
        path.unlink()

    def _image(self, path: Path) -> Image:
        stat = path.stat()
        return Image(path.relative_to(self.folder).as_posix(), stat.st_size,
                     datetime.fromtimestamp(stat.st_mtime, timezone.utc))


class S3Storage:
    """A bucket on an S3-compatible endpoint (IBM COS: HMAC keys, SigV4)."""

    def __init__(self, client, bucket: str, presign_client=None, public_base_url: str | None = None,
                 url_ttl: int = 3600):
        self.client = client
        self.bucket = bucket
        self.presign_client = presign_client or client
        self.public_base_url = public_base_url
        self.url_ttl = url_ttl
        self.where = f"bucket {bucket} at {client.meta.endpoint_url}"

    @classmethod
    def from_settings(cls, settings: Settings) -> "S3Storage":
        bucket = settings.require("s3_bucket")
        client = s3_client(settings, settings.s3_endpoint)
        presign = client
        if settings.s3_public_endpoint and settings.s3_public_endpoint != settings.s3_endpoint:
            presign = s3_client(settings, settings.s3_public_endpoint)
        return cls(client, bucket, presign, settings.images_base_url, settings.s3_url_ttl)

    def image_url(self, key: str, base_url: str) -> str:
        if self.public_base_url:
            return f"{self.public_base_url}/{quote(key)}"
        # Presigning is local arithmetic: no request is made here.
        return self.presign_client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.url_ttl
        )

    def image_put(self, key: str, path: Path) -> Image:
        check_image_key(key)
        with self._errors(key):
            self.client.upload_file(str(path), self.bucket, key,
                                    ExtraArgs={"ContentType": "application/octet-stream"})
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        return Image(key, head["ContentLength"], head["LastModified"])

    def image_list(self, prefix: str = "") -> list[Image]:
        images = []
        with self._errors(prefix or "*"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                images += [Image(o["Key"], o["Size"], o["LastModified"]) for o in page.get("Contents", [])]
        return images

    def image_delete(self, key: str) -> None:
        check_image_key(key)
        with self._errors(key):
            # S3 deletes are idempotent; ask first so a typo is reported, not ignored.
            self.client.head_object(Bucket=self.bucket, Key=key)
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def _errors(self, key: str):
        return _S3Errors(self, key)


class _S3Errors:
    """Turn boto3's errors into StorageErrors that name the image and the bucket."""

    def __init__(self, storage: S3Storage, key: str):
        self.storage, self.key = storage, key

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(error, ClientError):
            code = error.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                raise ImageNotFoundError(f"no image {self.key!r} in {self.storage.where}") from None
            if code == "NoSuchBucket":
                raise StorageError(f"{self.storage.where}: the bucket does not exist") from None
            message = error.response.get("Error", {}).get("Message") or code
            raise StorageError(f"{self.storage.where}: {code}: {message} (image {self.key!r})") from None
        if isinstance(error, BotoCoreError):
            raise StorageError(f"{self.storage.where}: {error}") from None
        return False


def s3_client(settings: Settings, endpoint: str | None):
    """A boto3 S3 client for this endpoint: HMAC keys, SigV4, path-style addressing."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60),
    )


def storage_from_settings(settings: Settings) -> Storage:
    if settings.storage == "s3":
        return S3Storage.from_settings(settings)
    if settings.storage == "local":
        return LocalStorage(settings.images_dir, settings.images_base_url)
    raise SettingsError(f"BOOTFLEET_STORAGE must be one of {', '.join(BACKENDS)}, got {settings.storage!r}")


_cache: dict[tuple, Storage] = {}
_STORAGE_SETTINGS = ("storage", "images_dir", "images_base_url", "s3_endpoint", "s3_public_endpoint", "s3_bucket",
                     "s3_region", "s3_access_key_id", "s3_secret_access_key", "s3_url_ttl")


def get_storage() -> Storage:
    """The storage the settings name, built once per settings (a boto3 client is not cheap)."""
    settings = get_settings()
    key = tuple(getattr(settings, name) for name in _STORAGE_SETTINGS)
    if key not in _cache:
        _cache.clear()
        _cache[key] = storage_from_settings(settings)
    return _cache[key]


def image_url(key: str, base_url: str) -> str:
    """The URL iPXE fetches a kernel or initrd from, given its key (or already a URL)."""
    if key.startswith(("http://", "https://")):
        return key
    return get_storage().image_url(key, base_url)
