"""gunicorn's threaded worker, buffering each request before a thread takes it (as nginx does
in front): `bootfleet serve` and the router mode (the container, the systemd unit) run it
(`--worker-class bootfleet.web.worker.BufferingThreadWorker`).

gthread hands a connection to a thread as soon as its first byte arrives; the thread then
reads the headers and body with blocking reads, so a client sending its request slowly holds
a thread for as long as it likes, and threads-many such clients stop the server. Here the
worker's event loop reads each request, without blocking, until it is whole: the headers,
then the body by its Content-Length or chunked framing (up to a little past
BOOTFLEET_MAX_BODY_BYTES, which the application then refuses: web/bodylimit.py). Only a
whole request goes to a thread, which finds every byte already read. A client has
BOOTFLEET_CLIENT_TIMEOUT seconds from connecting (or from its previous answer) to send its
request, else a 408 and the connection closes; headers past 64 KiB are a 431.
"""

from __future__ import annotations

import selectors
import time
from functools import partial

from gunicorn import http
from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import ThreadWorker

MAX_HEAD = 64 * 1024  # the request line and headers, at most (nginx: 4 x 8 KiB by default)
MAX_SIZE_LINE = 16 * 1024  # a chunk-size line longer goes to gunicorn's parser, which refuses past 8190 bytes
SLACK = 64 * 1024  # body bytes past the limit held before the application answers 413
HEX = frozenset(b"0123456789abcdefABCDEF")
DONE = "done"


class RequestScanner:
    """Whether the bytes of one HTTP/1.1 request received so far are all of it, fed as they come.

    verdict(): DONE (a thread can take it: whole, or wrong in a way gunicorn's parser refuses at
    once), None (wait for more), or (status, reason) to answer here and close."""

    def __init__(self, limit: int):
        self.limit = limit
        self.buf = bytearray()
        self.searched = 0
        self.head_end: int | None = None
        self.length: int | None = None
        self.pos = 0  # where the next chunk-size line starts
        self.decoded = 0  # chunk data bytes before self.pos
        self.continue_wanted = False  # Expect: 100-continue, the body still to come: answer 100 now

    def feed(self, data: bytes):
        self.buf += data
        return self.verdict()

    def verdict(self):
        if self.head_end is None:
            end = self.buf.find(b"\r\n\r\n", max(0, self.searched - 3))
            if end < 0:
                self.searched = len(self.buf)
                return (431, "request headers larger than 64 KiB") if len(self.buf) > MAX_HEAD else None
            self.head_end = self.pos = end + 4
            framing = self._framing(bytes(self.buf[:end]))
            if framing is not None:
                return framing
        if self.length is not None:
            return DONE if len(self.buf) - self.head_end >= self.length else None
        return self._chunks()

    def _framing(self, head: bytes):
        """DONE when nothing more needs waiting for; None for a body to wait for."""
        encoding, lengths, expect = None, [], False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"transfer-encoding":
                encoding = value.strip().lower()
            elif name == b"content-length":
                lengths.append(value.strip())
            elif name == b"expect":
                expect = value.strip().lower() == b"100-continue"
        self.continue_wanted = expect  # dropped again below when no body is waited for
        if encoding is not None:
            # Chunked: wait for its end. Anything else, or both framings: the parser refuses it.
            return None if encoding == b"chunked" and not lengths else self._no_wait()
        if not lengths:
            return self._no_wait()  # no body
        if len(lengths) > 1 or not lengths[0].isdigit() or int(lengths[0]) > self.limit:
            return self._no_wait()  # refused by the parser, or by the application unread (413)
        self.length = int(lengths[0])
        return None

    def _no_wait(self):
        self.continue_wanted = False  # gunicorn answers the Expect itself, if it reads a body
        return DONE

    def _chunks(self):
        while True:
            end = self.buf.find(b"\r\n", self.pos)
            if end < 0:
                return DONE if len(self.buf) - self.pos > MAX_SIZE_LINE else self._waiting(0)
            size_text = bytes(self.buf[self.pos:end]).split(b";")[0].strip(b" \t")
            if not size_text or not HEX.issuperset(size_text):
                return DONE  # a malformed size: the parser refuses it (the application's 400)
            size = int(size_text, 16)
            if size == 0:  # the last chunk, then trailers (if any) and an empty line
                return DONE if self.buf.find(b"\r\n\r\n", end) >= 0 else self._waiting(0)
            held = len(self.buf) - (end + 2)
            if held < size + 2:
                return self._waiting(min(held, size))
            self.decoded += size
            self.pos = end + 2 + size + 2

    def _waiting(self, partial_chunk: int):
        if self.decoded + partial_chunk > self.limit + SLACK:
            return DONE  # more than the application takes: it reads one byte past the limit and refuses
        if len(self.buf) - self.head_end > 8 * self.limit + SLACK:
            return (413, "the chunked framing of this body is larger than 8 times its limit")
        return None


def _answer(status: int, reason: str) -> bytes:
    text = {408: "Request Timeout", 413: "Content Too Large", 431: "Request Header Fields Too Large"}[status]
    body = f"{reason}\n".encode()
    return (f"HTTP/1.1 {status} {text}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def _limits() -> tuple[int, float]:
    from bootfleet.errors import SettingsError
    from bootfleet.settings import get_settings

    try:
        settings = get_settings()
        return settings.max_body_bytes, max(1.0, float(settings.client_timeout))
    except SettingsError:  # the application says what is wrong; the worker still serves it
        return 1024 * 1024, 15.0


class BufferingThreadWorker(ThreadWorker):
    def init_process(self):
        self.body_limit, self.client_timeout = _limits()
        self.reading: dict = {}  # connections whose request is being read, in arrival order
        super().init_process()

    def _buffering(self, conn) -> bool:
        # TLS and HTTP/2 (neither used by bootfleet) are left to gthread as they are.
        return not self.cfg.is_ssl and not conn.is_http2 and not negotiation.prior_knowledge_allowed(
            self.cfg, conn.client)

    def enqueue_req(self, conn):
        """Every way gthread hands a connection to a thread (accepted, kept alive, read ahead)
        comes here: read its request first."""
        if not self._buffering(conn):
            return super().enqueue_req(conn)
        conn.sock.setblocking(False)
        conn.scanner = RequestScanner(self.body_limit)
        conn.deadline = time.monotonic() + self.client_timeout
        held = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        verdict = conn.scanner.feed(held) if held else None
        if verdict is not None:
            return self._decide(conn, verdict)
        self.reading[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn, _sock):
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client is gone
            return self._close(conn)
        verdict = conn.scanner.feed(data)
        if verdict is None and conn.scanner.continue_wanted:  # the client waits for it to send its body
            conn.scanner.continue_wanted = False
            try:
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            except OSError:
                pass
        if verdict is not None:
            self._stop_reading(conn)
            self._decide(conn, verdict)

    def _decide(self, conn, verdict):
        if verdict != DONE:
            return self._close(conn, _answer(*verdict))
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(bytes(conn.scanner.buf))
        conn.scanner = None
        conn.data_ready = True  # gthread's own wait for a first byte is over
        super().enqueue_req(conn)

    def _stop_reading(self, conn):
        self.reading.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (OSError, KeyError, ValueError):
            pass

    def _close(self, conn, answer: bytes = b""):
        self._stop_reading(conn)
        if answer:
            try:
                conn.sock.send(answer)
            except OSError:
                pass
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self):
        """gthread's own, then the requests not whole by their deadline (all, when stopping)."""
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c in self.reading if c.deadline <= now or not self.alive]:
            started = bool(conn.scanner.buf)
            self._close(conn, _answer(408, f"the request was not sent whole within {self.client_timeout:g} s")
                        if started else b"")
