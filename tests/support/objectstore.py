"""moto's S3 server on 127.0.0.1, with a log of every request it answered.

Used by tests/functional/test_storage.py and the QEMU e2e: boto3 talks to it as to IBM COS
(HMAC keys, SigV4, path-style), and iPXE fetches presigned URLs from it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

ACCESS_KEY = "bootfleet-test-access-key"
SECRET_KEY = "bootfleet-test-secret-key"
REGION = "us-south"


@dataclass
class Request:
    method: str
    target: str  # path and query, as the client sent them
    status: int


class _RequestLog(logging.Handler):
    """werkzeug logs one line per request: '"GET /b/k?X-Amz-... HTTP/1.1" 200 123'."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.requests: list[Request] = []
        self.guard = threading.Lock()

    def emit(self, record):
        if not isinstance(record.args, tuple) or len(record.args) != 3:
            return
        line, status, _size = record.args
        parts = str(line).split(" ")
        if len(parts) >= 2:
            with self.guard:
                self.requests.append(Request(parts[0], parts[1], int(getattr(status, "value", status))))


class S3Server:
    """A real S3 HTTP API (moto) on a free port of 127.0.0.1."""

    def __init__(self):
        from moto.server import ThreadedMotoServer

        self._log = _RequestLog()
        logger = logging.getLogger("werkzeug")
        logger.setLevel(logging.INFO)
        logger.addHandler(self._log)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        self.host, self.port = self._server.get_host_and_port()
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[Request]:
        with self._log.guard:
            return list(self._log.requests)

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY,
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
        return name

    def env(self, bucket: str, public_endpoint: str | None = None) -> dict[str, str]:
        """The BOOTFLEET_ settings that point bootfleet at this server."""
        env = {
            "BOOTFLEET_STORAGE": "s3",
            "BOOTFLEET_S3_ENDPOINT": self.url,
            "BOOTFLEET_S3_BUCKET": bucket,
            "BOOTFLEET_S3_REGION": REGION,
            "BOOTFLEET_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "BOOTFLEET_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        }
        if public_endpoint:
            env["BOOTFLEET_S3_PUBLIC_ENDPOINT"] = public_endpoint
        return env

    def stop(self) -> None:
        self._server.stop()
        logging.getLogger("werkzeug").removeHandler(self._log)
