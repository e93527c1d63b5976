"""The `s3` image storage: an S3-compatible bucket (IBM Cloud Object Storage) through boto3, presigned URLs for iPXE."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from bootfleet.providers.storage.base import Image, ImageNotFoundError, StorageError, check_image_key
from bootfleet.settings import Settings


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
    """A boto3 S3 client for this endpoint: HMAC keys, SigV4, path-style addressing.

    Checksums only where an operation requires them: since 1.36, boto3 adds a CRC32
    checksum to every upload by default, sent as an `aws-chunked` body with an
    `x-amz-checksum-crc32` trailer, which S3-compatible stores (IBM COS among them)
    may refuse; with `when_required` an upload is a plain body with its SigV4 hash
    (tests/functional/test_storage.py watches the request on the wire)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60,
                      request_checksum_calculation="when_required", response_checksum_validation="when_required"),
    )
