"""What bootfleet sends PostgreSQL, counted on the wire (not by asking bootfleet): a
RecordingProxy (support/wire.py) in front of the database, and its record of each
connection read as PostgreSQL's frontend protocol. Each Sync ('S') or simple Query
('Q') ends one round trip; Parse ('P') is a statement prepared."""

from __future__ import annotations

import collections
import struct
from urllib.parse import urlparse, urlunparse

from bootfleet.db.connection import connect_args
from support.wire import RecordingProxy

PRE_STARTUP = {80877103, 80877104}  # SSLRequest, GSSENCRequest: untyped, before the startup message


def messages(stream: bytes) -> list[tuple[int, str]]:
    """(offset, type) of each typed message a client sent on one connection."""
    found, at, started = [], 0, False
    while True:
        if not started:  # untyped: SSL/GSS requests, then the startup message
            if len(stream) < at + 8:
                return found
            length, code = struct.unpack("!II", stream[at:at + 8])
            at, started = at + length, code not in PRE_STARTUP
            continue
        if len(stream) < at + 5:
            return found
        (length,) = struct.unpack("!I", stream[at + 1:at + 5])
        if len(stream) < at + 1 + length:
            return found
        found.append((at, chr(stream[at])))
        at += 1 + length


class PgWireCounter:
    def __init__(self, upstream_url: str):
        self.upstream_url = upstream_url
        args = connect_args(upstream_url)
        upstream = (args["unix_sock"], None) if "unix_sock" in args else (args["host"], args["port"])
        self.proxy = RecordingProxy(*upstream)  # records what a client sent before passing it on
        self._from: list[int] = []  # per connection, where counting starts (reset)

    @property
    def url(self) -> str:
        """The upstream URL, pointed at this proxy (plain TCP on loopback)."""
        parsed = urlparse(self.upstream_url)
        userinfo = parsed.netloc.rsplit("@", 1)[0] + "@" if "@" in parsed.netloc else ""
        return urlunparse(parsed._replace(netloc=f"{userinfo}127.0.0.1:{self.proxy.port}", query="sslmode=disable"))

    @property
    def counts(self) -> collections.Counter[str]:
        """Messages by type since the last reset, over every connection."""
        with self.proxy.lock:
            streams = [bytes(s) for s in self.proxy.sent]
        counts: collections.Counter[str] = collections.Counter()
        for i, stream in enumerate(streams):
            start = self._from[i] if i < len(self._from) else 0
            counts.update(kind for at, kind in messages(stream) if at >= start)
        return counts

    def round_trips(self) -> int:
        counts = self.counts
        return counts["S"] + counts["Q"]

    def reset(self) -> None:
        with self.proxy.lock:
            self._from = [len(s) for s in self.proxy.sent]

    def close(self) -> None:
        self.proxy.close()
