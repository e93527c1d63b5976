"""Issue 26, "Hold under abuse": each attack of the review as a test, against real servers
(`bootfleet serve`, the router; each function alone under functions-framework) and the real
database."""

from __future__ import annotations

import json
import secrets
import socket
import statistics
import threading
import time

import pytest
import requests
from support import ADMIN, ADMIN_TOKEN
from support.helpers import make_node, make_profile, snapshot
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


class SlowClients:
    """`count` connections, each sending `request` one byte at a time, every `pause` seconds
    (a slowloris), from one thread until stopped."""

    def __init__(self, port: int, count: int, request: bytes, pause: float = 0.2, first: bytes = b""):
        self.socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
        for s in self.socks if first else ():  # a whole request first: the slow one comes on a kept-alive connection
            s.sendall(first)
            s.recv(65536)
        self.request, self.pause = request, pause
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self):
        for i in range(len(self.request)):
            for s in self.socks:
                try:
                    s.send(self.request[i:i + 1])
                except OSError:
                    pass
            if self.stop.wait(self.pause):
                return

    def close(self):
        self.stop.set()
        self.thread.join()
        for s in self.socks:
            s.close()


@pytest.mark.parametrize("request_bytes", [
    _head("GET", "/boot/ipxe?mac=52:54:00:00:00:01", "X-Pad: " + "p" * 200),  # slow headers
    _head("POST", "/config/api/v1/profiles", "Content-Length: 300", "Content-Type: application/json")
    + b"x" * 300,  # slow body
    _head("POST", "/config/api/v1/profiles", "Transfer-Encoding: chunked") + b"100\r\n" + b"x" * 300,
])
@pytest.mark.parametrize("kept_alive", [False, True])
def test_more_slow_clients_than_threads_and_boot_keeps_answering(database, request_bytes, kept_alive):
    """1 worker x 2 threads, 8 clients trickling their requests (on new connections, or on ones
    that had a request answered already): each probe is answered at once."""
    with RunningServer(threads=2) as srv:
        slow = SlowClients(srv.port, 8, request_bytes, first=_head("GET", "/boot/boot.ipxe") if kept_alive else b"")
        try:
            time.sleep(1)  # every slow client has begun its request
            for _ in range(3):
                resp = requests.get(srv.url + "/boot/boot.ipxe", timeout=5)
                assert resp.status_code == 200 and resp.text.startswith("#!ipxe")
        finally:
            slow.close()


def test_a_request_not_sent_whole_in_time_is_a_408(database):
    with RunningServer(env={"BOOTFLEET_CLIENT_TIMEOUT": "2"}, threads=2) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as conn:
            conn.sendall(b"GET /boot/boot.ipxe HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            answer = conn.recv(65536)
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert b"not sent whole within 2 s" in answer
        status, _, body = raw_http(srv.port, _head("GET", "/boot/boot.ipxe", "X-Big: " + "b" * 70_000))
        assert status == 431, body


def test_kept_alive_and_pipelined_requests_still_work(router):
    with requests.Session() as session:
        for _ in range(3):
            assert session.get(router.url + "/boot/boot.ipxe", timeout=5).status_code == 200
    two = _head("GET", "/boot/boot.ipxe") + _head("GET", "/healthz", "Connection: close")
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as conn:
        conn.sendall(two)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 2 and b'"status":"ok"' in data, data[:500]


def _median_ms(session, url: str) -> float:
    started = time.perf_counter()
    resp = session.get(url, timeout=10)
    assert resp.status_code == 200 and "no boot script for this machine" in resp.text, resp.text
    return (time.perf_counter() - started) * 1000


def test_known_and_unknown_macs_take_alike_without_proof(database, clean_db):
    """From outside the boot networks (loopback is not one here), a registered MAC and a fresh
    made-up one get the same refusal at the same cost: medians of interleaved samples."""
    env = {"BOOTFLEET_BOOT_NETWORKS": "10.99.0.0/16", "BOOTFLEET_BOOT_RATE_LIMIT": "0"}
    with RunningServer(env=env, threads=4) as srv, requests.Session() as session:
        admin = {"Authorization": f"Bearer {srv.admin_token}"}
        session.post(srv.url + "/config/api/v1/profiles", headers=admin, timeout=10,
                     json={"name": "p", "kernel": "k"}).raise_for_status()
        known = ["52:54:00:aa:00:01", "52:54:00:aa:00:02"]
        for mac in known:
            session.post(srv.url + "/config/api/v1/nodes", headers=admin, timeout=10,
                         json={"macs": [mac], "profile": "p"}).raise_for_status()
        samples = {"known": [], "unknown": []}
        for i in range(400):
            pair = [("known", known[i % 2]), ("unknown", f"02:00:{i >> 8 & 255:02x}:{i & 255:02x}:00:01")]
            for kind, mac in pair if i % 2 else pair[::-1]:
                samples[kind].append(_median_ms(session, f"{srv.url}/boot/ipxe?mac={mac}"))
    known_ms, unknown_ms = (statistics.median(samples[k]) for k in ("known", "unknown"))
    assert abs(known_ms - unknown_ms) < 0.15 * max(known_ms, unknown_ms), (known_ms, unknown_ms)


@pytest.mark.parametrize("networks,discovery", [("10.99.0.0/16", None), ("127.0.0.0/8", "nowhere")])
def test_a_mac_scan_adds_a_bounded_number_of_rows(boot, clean_db, settings, networks, discovery):
    """An evicted MAC used to count as new again, each with its event: now the table holds its
    cap and the unknown-boot events theirs, whatever the scan's size (from outside the boot
    networks; and from inside, through discovery's refusal)."""
    settings(unknown_max=5, unknown_event_max=3, boot_networks=networks, discovery_profile=discovery)
    for i in range(120):
        resp = boot.get(f"/ipxe?mac=02:01:00:00:{i >> 8:02x}:{i & 255:02x}")
        assert "no boot script for this machine" in resp.get_data(as_text=True)
    rows = snapshot(clean_db)
    assert len(rows["unknown_machine"]) == 5
    assert [e["kind"] for e in rows["event"]] == ["unknown-boot"] * 3


def test_node_creates_racing_a_deployment_delete_serialize(router, clean_db):
    """7 creates into a deployment and its delete 5 ms later, 10 times: each create is before
    the delete (201, then torn down with it) or after it (409), and cleanup finishes every one."""
    admin = {"Authorization": f"Bearer {router.admin_token}"}
    url = router.url + "/config/api/v1"
    requests.post(url + "/profiles", headers=admin, timeout=10, json={"name": "p", "kernel": "k"}).raise_for_status()
    codes = []
    for round_ in range(10):
        name = f"race{round_}"
        requests.post(url + "/deployments", headers=admin, timeout=10, json={"name": name, "profile": "p"}
                      ).raise_for_status()

        def create(i, name=name, round_=round_):
            resp = requests.post(url + "/nodes", headers=admin, timeout=20,
                                 json={"macs": [f"52:54:00:77:{round_:02x}:{i:02x}"], "deployment": name})
            codes.append(resp.status_code)

        threads = [threading.Thread(target=create, args=(i,)) for i in range(7)]
        for t in threads:
            t.start()
        time.sleep(0.005)
        deleted = requests.delete(f"{url}/deployments/{name}", headers=admin, timeout=20)
        for t in threads:
            t.join()
        assert deleted.status_code == 202, deleted.text
    assert set(codes) <= {201, 409}, codes
    requests.post(router.url + "/cleanup/run", headers=admin, timeout=60).raise_for_status()
    with clean_db.transaction() as tx:
        assert tx.all("SELECT name, state FROM deployment WHERE state <> 'deleted'") == []
        assert tx.all("SELECT id, stage FROM node WHERE stage <> 'deleted'") == []


def _peak_rss_mb(parent: int) -> float:
    """The largest peak resident memory among a process's children (gunicorn's workers), in MB."""
    children = open(f"/proc/{parent}/task/{parent}/children").read().split()
    peaks = []
    for pid in children:
        status = open(f"/proc/{pid}/status").read()
        peaks.append(int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024)
    return max(peaks)


def test_a_format_width_is_refused_before_it_allocates(router, clean_db):
    """'{:>300000000}'.format(1) used to take the worker to 300 MB (kept) before its 400."""
    admin = {"Authorization": f"Bearer {router.admin_token}"}
    before = _peak_rss_mb(router.proc.pid)
    for template in ["{{ '{:>300000000}'.format(1) }}", "{{ '%300000000d' % 1 }}"]:
        resp = requests.post(router.url + "/config/api/v1/profiles", headers=admin, timeout=30,
                             json={"name": "p", "kernel": "k", "args": template})
        assert resp.status_code == 400 and "widths of 300000000" in resp.json()["error"], resp.text
    assert _peak_rss_mb(router.proc.pid) < before + 100


def test_each_template_check_has_a_fresh_sample_node(config, clean_db):
    """A template that changes the sample node (node.macs.append) changed the next check's."""
    grow = "{{ node.macs.append('m' * 3000000) or '' }}x"
    for name in ("a", "b"):
        assert config.post("/api/v1/profiles", json={"name": name, "kernel": "k", "args": grow},
                           headers=ADMIN).status_code == 201
    resp = config.post("/api/v1/profiles", json={"name": "c", "kernel": "k", "args": "{{ node.macs | join | length }}"},
                       headers=ADMIN)
    assert resp.status_code == 201, resp.get_data(as_text=True)


def test_a_node_deleted_through_cleanup_frees_its_smbios_uuid(function_apps, config, clean_db):
    uuid = "4c4c4544-0042-3510-8052-b4c04f4e4b31"
    make_profile(config, ADMIN)
    config.post("/api/v1/deployments", json={"name": "old", "profile": "worker"}, headers=ADMIN)
    make_node(config, ADMIN, mac="52:54:00:00:00:01", uuid=uuid, deployment="old")
    assert config.delete("/api/v1/deployments/old", headers=ADMIN).status_code == 202
    assert function_apps["cleanup"].test_client().post("/run", headers=ADMIN).status_code == 200
    resp = config.post("/api/v1/nodes", json={"macs": ["52:54:00:00:00:02"], "uuid": uuid, "profile": "worker"},
                       headers=ADMIN)
    assert resp.status_code == 201, resp.get_data(as_text=True)


def test_wrong_admin_tokens_are_limited_per_address_across_workers(database, clean_db):
    env = {"BOOTFLEET_ADMIN_FAILURE_LIMIT": "5"}
    with RunningServer(env=env, workers=2, threads=2) as srv:
        codes = []
        for i in range(12):  # a new connection each: both workers take some
            resp = requests.get(srv.url + "/config/api/v1/nodes", headers={"Authorization": f"Bearer guess{i}"},
                                timeout=10)
            codes.append(resp.status_code)
        assert codes[:5] == [403] * 5 and codes[5:] == [429] * 7, codes
        assert 1 <= int(resp.headers["Retry-After"]) <= 13 and "too many wrong tokens" in resp.json()["error"]
        # The right token waits too, from that address; the cleanup function's token check as well.
        right = {"Authorization": f"Bearer {srv.admin_token}"}
        assert requests.get(srv.url + "/config/api/v1/nodes", headers=right, timeout=10).status_code == 429
        assert requests.post(srv.url + "/cleanup/run", headers=right, timeout=10).status_code == 429
        time.sleep(13)  # 5 a minute: one attempt back every 12 s
        assert requests.get(srv.url + "/config/api/v1/nodes", headers=right, timeout=10).status_code == 200


def test_the_router_boot_rate_limit_holds_across_workers(database, clean_db):
    with RunningServer(env={"BOOTFLEET_BOOT_RATE_LIMIT": "5"}, workers=2, threads=2) as srv:
        started = time.monotonic()
        codes = [requests.get(srv.url + "/boot/boot.ipxe", timeout=10).status_code for _ in range(60)]
        elapsed = time.monotonic() - started
    assert codes.count(200) <= 10 + 5 * elapsed + 1, (codes.count(200), elapsed)
    assert codes.count(429) >= 60 - (10 + 5 * elapsed + 1)


@pytest.mark.parametrize("name", ["BOOTFLEET_BOOT_NETWORKS", "BOOTFLEET_TRUSTED_PROXIES"])
@pytest.mark.parametrize("value", ["0.0.0.0/0", "10.0.0.0/8, ::/0"])
def test_every_address_as_a_boot_network_or_proxy_is_refused(database, boot, monkeypatch, name, value):
    """Refused, not warned about: serve does not start, a function answers that it is misconfigured."""
    from bootfleet.settings import reset_settings

    with pytest.raises(RuntimeError) as failed:
        RunningServer(env={name: value}, timeout=20)
    assert "is every address" in str(failed.value) and name in str(failed.value)
    monkeypatch.setenv(name, value)
    reset_settings()
    try:
        resp = boot.get("/ipxe?mac=52:54:00:00:00:01")
    finally:
        monkeypatch.undo()
        reset_settings()
    assert resp.status_code == 500 and "server misconfigured" in resp.get_data(as_text=True)
    assert "is every address" in resp.get_data(as_text=True)


def test_serve_listens_on_every_ipv6_address(database):
    with RunningServer(host="::", threads=2) as srv:
        assert requests.get(f"http://[::1]:{srv.port}/healthz", timeout=10).json() == {"status": "ok"}
        assert f"http://[::]:{srv.port}/" in srv.output()


def test_a_percent_escaped_token_is_redacted_in_the_access_log(tmp_path, database):
    log = tmp_path / "access.log"
    secret = secrets.token_urlsafe(12)  # what a token looks like, made for this test
    with RunningServer(env={"BOOTFLEET_ACCESS_LOG": str(log)}, threads=2) as srv:
        for query in [f"token%3D{secret}", f"%74oken={secret}", f"token%253D{secret}", f"x=1&secret%3d{secret}"]:
            requests.get(f"{srv.url}/config/nodes/00000000-0000-4000-8000-000000000000/meta-data?{query}", timeout=10)
    text = log.read_text()
    assert text.count("[redacted]") >= 4 and secret not in text, text


def test_a_client_that_expects_100_continue_gets_it_before_sending_its_body(router, clean_db):
    body = json.dumps({"name": "cont", "kernel": "k"}).encode()
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as conn:
        conn.sendall(_head("POST", "/config/api/v1/profiles", ADMIN_HEADER, "Content-Type: application/json",
                           "Expect: 100-continue", f"Content-Length: {len(body)}", "Connection: close"))
        assert conn.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        conn.sendall(body)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    assert b"HTTP/1.1 201 " in data, data[:300]


def test_a_chunk_size_line_without_an_end_is_refused_at_once(router):
    status, _, body = raw_http(router.port, _head("POST", "/config/api/v1/nodes", "Transfer-Encoding: chunked"),
                               b"1" * 20_000, timeout=10)
    assert status == 400 and b"chunked" in body, (status, body)
