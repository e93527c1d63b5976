"""A counting proxy for PostgreSQL's wire protocol: what bootfleet sends, seen on the
wire (not by asking bootfleet). Each frontend Sync ('S') or simple Query ('Q') ends
one round trip; Parse ('P') is a statement prepared."""

from __future__ import annotations

import collections
import socket
import struct
import threading
from urllib.parse import urlparse, urlunparse

from bootfleet.db.connection import connect_args

PRE_STARTUP = {80877103, 80877104}  # SSLRequest, GSSENCRequest


class PgWireCounter:
    def __init__(self, upstream_url: str):
        self.upstream_url = upstream_url
        self.upstream = connect_args(upstream_url)
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        """The upstream URL, pointed at this proxy (plain TCP on loopback)."""
        parsed = urlparse(self.upstream_url)
        userinfo = parsed.netloc.rsplit("@", 1)[0] + "@" if "@" in parsed.netloc else ""
        return urlunparse(parsed._replace(netloc=f"{userinfo}127.0.0.1:{self.port}", query="sslmode=disable"))

    def round_trips(self) -> int:
        with self._lock:
            return self.counts["S"] + self.counts["Q"]

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()

    def _connect_upstream(self) -> socket.socket:
        if "unix_sock" in self.upstream:
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(self.upstream["unix_sock"])
            return sock
        return socket.create_connection((self.upstream["host"], self.upstream["port"]))

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = self._connect_upstream()
            threading.Thread(target=self._frontend, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()

    def _frontend(self, client: socket.socket, server: socket.socket) -> None:
        buffer = b""
        started = False
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                buffer += data
                while True:  # counted before it is sent on: when the answer is back, the count is right
                    if not started:  # untyped: SSL/GSS requests (answered N), then the startup message
                        if len(buffer) < 8:
                            break
                        length, code = struct.unpack("!II", buffer[:8])
                        if len(buffer) < length:
                            break
                        buffer, started = buffer[length:], code not in PRE_STARTUP
                        continue
                    if len(buffer) < 5:
                        break
                    kind, (length,) = chr(buffer[0]), struct.unpack("!I", buffer[1:5])
                    if len(buffer) < 1 + length:
                        break
                    with self._lock:
                        self.counts[kind] += 1
                    buffer = buffer[1 + length:]
                server.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (client, server):
                sock.close()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._listener.close()
