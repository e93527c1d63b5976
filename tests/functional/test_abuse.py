"""Issue 26, "Hold under abuse": each attack of the review as a test, against real servers
(`bootfleet serve`, the router; each function alone under functions-framework) and the real
database."""

from __future__ import annotations

import json

import pytest
from support import ADMIN, ADMIN_TOKEN
from support.helpers import snapshot
from support.server import RunningFunction, RunningServer
from support.wire import raw_http

LIMIT = 100_000
LIMITS = {"BOOTFLEET_MAX_BODY_BYTES": str(LIMIT)}


@pytest.fixture(scope="module")
def router(database):
    with RunningServer(env={**LIMITS, "BOOTFLEET_ADMIN_TOKEN": ADMIN_TOKEN}, threads=4) as srv:
        yield srv


@pytest.fixture(scope="module")
def alone(database):
    """config and boot, each alone under functions-framework."""
    with RunningFunction("config", LIMITS) as config, RunningFunction("boot", LIMITS) as boot:
        yield {"config": config, "boot": boot}


def _modes(router, alone):
    """(name, port, path prefix of config, of boot, server output) for each way to serve."""
    return [("router", router.port, "/config", "/boot", router.output),
            ("alone", alone["config"].port, "", "", alone["config"].output),
            ("alone-boot", alone["boot"].port, "", "", alone["boot"].output)]


def _chunked(size: int, piece: int = 16_384):
    sent = 0
    while sent < size:
        n = min(piece, size - sent)
        yield f"{n:x}\r\n".encode() + b"a" * n + b"\r\n"
        sent += n
    yield b"0\r\n\r\n"


def _head(method: str, path: str, *headers: str) -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(h + "\r\n" for h in headers)
            + "\r\n").encode()


def _too_large(status, headers, body, text: bool):
    assert status == 413, (status, body[:300])
    if text:
        assert body.decode().startswith("boot: the request body is larger than 100000 bytes"), body
    else:
        assert json.loads(body) == {"error": "the request body is larger than 100000 bytes", "status": 413}


def test_a_chunked_body_past_the_limit_is_a_413_before_any_auth_check(router, alone, clean_db):
    before = snapshot(clean_db)
    for name, port, config, boot, _ in _modes(router, alone):
        if name != "alone-boot":
            answer = raw_http(port, _head("POST", f"{config}/api/v1/nodes", "Transfer-Encoding: chunked",
                                          "Content-Type: application/json"), *_chunked(3 * LIMIT))
            _too_large(*answer, text=False)
        if name != "alone":
            answer = raw_http(port, _head("POST", f"{boot}/ipxe?mac=52:54:00:00:00:01", "Transfer-Encoding: chunked",
                                          "Content-Type: application/x-www-form-urlencoded"), *_chunked(3 * LIMIT))
            _too_large(*answer, text=True)
    assert snapshot(clean_db) == before


def test_a_content_length_past_the_limit_is_answered_without_reading_the_body(router, alone, clean_db):
    """400 MiB announced, 1 KiB sent: the 413 comes at once (functions-framework's hook used to
    wait to read the whole body, holding a thread and the memory)."""
    for name, port, config, boot, _ in _modes(router, alone):
        path = f"{boot}/ipxe?mac=52:54:00:00:00:01" if name == "alone-boot" else f"{config}/api/v1/profiles"
        answer = raw_http(port, _head("POST", path, f"Content-Length: {400 << 20}",
                                      "Content-Type: application/x-www-form-urlencoded"), b"a=" + b"b" * 1024,
                          timeout=5)
        _too_large(*answer, text=name == "alone-boot")


def test_a_chunked_body_within_the_limit_still_works(router, alone, clean_db):
    body = json.dumps({"name": "chunky", "kernel": "k", "metadata": {"pad": "x" * (LIMIT // 2)}}).encode()
    for name, port, config, _, _ in _modes(router, alone):
        if name == "alone-boot":
            continue
        status, _, answer = raw_http(port, _head("POST", f"{config}/api/v1/profiles", "Transfer-Encoding: chunked",
                                                 "Content-Type: application/json", ADMIN_HEADER),
                                     f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        assert status in (201, 409), answer  # 409: the router's turn made it already (one database)
    with clean_db.transaction() as tx:
        assert tx.one("SELECT count(*) AS n FROM profile WHERE name = 'chunky'")["n"] == 1


@pytest.mark.parametrize("size_line", [b"zz", b"-1", b"0x10", b""])
def test_a_malformed_chunk_size_is_a_400_without_a_traceback(router, alone, clean_db, size_line):
    for name, port, config, boot, output in _modes(router, alone):
        path = f"{boot}/ipxe?mac=52:54:00:00:00:01" if name == "alone-boot" else f"{config}/api/v1/nodes"
        status, _, body = raw_http(port, _head("POST", path, "Transfer-Encoding: chunked"),
                                   size_line + b"\r\nabc\r\n0\r\n\r\n")
        assert status == 400 and b"chunked" in body, (name, status, body)
        assert "Traceback" not in output(), output()[-3000:]


ADMIN_HEADER = f"Authorization: {ADMIN['Authorization']}"
