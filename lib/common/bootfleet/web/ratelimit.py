"""A per-client request limit for /boot/ in the router (the gateway has nginx's
`limit_req`; this is its equivalent where there is no gateway): a token bucket per
client address, per process, BOOTFLEET_BOOT_RATE_LIMIT requests a second with a
burst of twice as many. More get a 429 with Retry-After."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from bootfleet.boot.trust import client_address
from bootfleet.settings import Settings

MAX_CLIENTS = 100_000  # buckets kept (least recently seen dropped first)


class TokenBuckets:
    def __init__(self, rate: float, burst: float, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            allowed = tokens >= 1
            self._buckets[key] = (tokens - 1 if allowed else tokens, now)
            if len(self._buckets) > MAX_CLIENTS:
                self._buckets.popitem(last=False)
            return allowed


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
    buckets = TokenBuckets(settings.boot_rate_limit, 2 * settings.boot_rate_limit)

    def limited(environ, start_response):
        address = client_address(environ.get("REMOTE_ADDR"), _WsgiHeaders(environ), settings)
        if buckets.allow(str(address)):
            return app(environ, start_response)
        body = b"boot: too many requests from this address; slow down\n"
        start_response("429 Too Many Requests", [("Content-Type", "text/plain; charset=utf-8"),
                                                 ("Content-Length", str(len(body))), ("Retry-After", "1")])
        return [body]

    return limited
