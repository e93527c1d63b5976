"""Per-client limits, as token buckets per client address (trust.client_address):

- /boot/ in the router (the gateway has nginx's `limit_req`; this is its equivalent where
  there is no gateway): BOOTFLEET_BOOT_RATE_LIMIT requests a second with a burst of twice as
  many; more get a 429 with Retry-After;
- failed admin-token attempts, everywhere an admin token is asked for (web/api.py):
  BOOTFLEET_ADMIN_FAILURE_LIMIT a minute (a burst as many); past it every admin request from
  that address is a 429 with Retry-After, whatever token it carries, until the bucket refills.

The buckets are the server's, not a process's: gunicorn's workers share them through a file
in PROMETHEUS_MULTIPROC_DIR (where they already add up their metrics; `bootfleet serve`, the
container and the systemd unit set it), mapped into each (mmap) and changed under a lock
(flock). Without that directory (one process: a test client) they live in the process.
A fixed table of SLOTS buckets: an address whose slot another took starts with a full bucket.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import math
import mmap
import os
import struct
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from bootfleet.boot.trust import client_address
from bootfleet.settings import Settings

log = logging.getLogger(__name__)
SLOTS = 65_536
_SLOT = struct.Struct("<Qdd")  # the address's fingerprint, tokens, when (CLOCK_MONOTONIC, the same in every process)


def shared_path(name: str, settings: Settings) -> Path | None:
    folder = settings.metrics_dir  # PROMETHEUS_MULTIPROC_DIR
    return Path(folder) / f"bootfleet-{name}.buckets" if folder else None


class TokenBuckets:
    def __init__(self, rate: float, burst: float, path: Path | None = None, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._lock = threading.Lock()
        self._fd = None
        size = SLOTS * _SLOT.size
        self._table = bytearray(size)
        if path is None:
            return
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self._table, self._fd = mmap.mmap(fd, size), fd
        except OSError as e:  # counted in this process alone: looser, never off
            log.warning("cannot share the rate limit's buckets through %s (%s); each process counts its own", path, e)

    @contextmanager
    def _locked(self):
        with self._lock:  # the threads of this process (flock holds for the whole open file)
            if self._fd is None:
                yield
                return
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # the other processes
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def take(self, key: str, consume: bool = True) -> float:
        """0 if `key` has a token (taken, if `consume`), else the seconds until it will have one."""
        mark = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") | 1
        offset = mark % SLOTS * _SLOT.size
        with self._locked():
            held, tokens, then = _SLOT.unpack_from(self._table, offset)
            now = self.clock()
            if held != mark or then > now:  # another address's, or from before a reboot
                tokens, then = self.burst, now
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            if consume and not wait:
                tokens -= 1
            _SLOT.pack_into(self._table, offset, mark, tokens, now)
            return wait

    def allow(self, key: str) -> bool:
        return self.take(key) == 0


class _WsgiHeaders:
    """The request headers trust.client_address reads, from a WSGI environ."""

    def __init__(self, environ: dict):
        self.environ = environ

    def get(self, name: str, default: str = "") -> str:
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"), default)


def limit_requests(app, settings: Settings):
    """Wrap a WSGI app (the boot function) in the per-client limit; unwrapped when off."""
    if settings.boot_rate_limit <= 0:
        return app
    buckets = TokenBuckets(settings.boot_rate_limit, 2 * settings.boot_rate_limit, shared_path("boot-rate", settings))

    def limited(environ, start_response):
        address = client_address(environ.get("REMOTE_ADDR"), _WsgiHeaders(environ), settings)
        wait = buckets.take(str(address))
        if not wait:
            return app(environ, start_response)
        body = b"boot: too many requests from this address; slow down\n"
        start_response("429 Too Many Requests", [("Content-Type", "text/plain; charset=utf-8"),
                                                 ("Content-Length", str(len(body))),
                                                 ("Retry-After", str(max(1, math.ceil(wait))))])
        return [body]

    return limited


_admin: dict[tuple, TokenBuckets] = {}
_admin_lock = threading.Lock()


def admin_failures(settings: Settings) -> TokenBuckets | None:
    """The buckets of failed admin-token attempts (None: no limit)."""
    limit = settings.admin_failure_limit
    if limit <= 0:
        return None
    key = (limit, settings.metrics_dir)
    with _admin_lock:
        if key not in _admin:
            _admin[key] = TokenBuckets(limit / 60, limit, shared_path("admin-failures", settings))
        return _admin[key]
