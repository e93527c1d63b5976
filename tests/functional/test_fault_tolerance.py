"""The whole system under faults: `bootfleet serve` (a real process) while its embedded
PostgreSQL is killed by PID, and while bootfleet itself is restarted, under a stream of
boot and status requests."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import psutil
import requests
from support import ADMIN
from support.server import RunningServer

PROFILE = {"name": "fault", "kernel": "vmlinuz", "initrds": ["initrd.img"],
           "args": "console=ttyS0 status={{ status_url }}", "config_format": "none"}
STAGES = ["installing", "rebooting", "ready"]


def _call(method, url, attempts=600, **kwargs):
    """A node's client: it tries again on 503 or no connection (what cloud-init and curl --retry do)."""
    for _ in range(attempts):
        try:
            resp = requests.request(method, url, timeout=10, **kwargs)
        except requests.ConnectionError:
            time.sleep(0.05)
            continue
        if resp.status_code != 503:
            return resp
        time.sleep(0.05)
    raise AssertionError(f"{method} {url}: no answer")


def _install(url: str, mac: str, node_id: str, started: threading.Event, seen: list[int], pause: float):
    """Boot (until the script is the installer's, not a retry), then report each stage until accepted."""
    while True:
        script = _call("GET", f"{url}/boot/ipxe", params={"mac": mac}).text
        match = re.search(r"token=([A-Za-z0-9._-]+)", script)
        if match:
            break
        assert "retrying" in script, script
        time.sleep(0.1)
    started.set()
    token = match.group(1)
    for stage in STAGES:
        time.sleep(pause)
        resp = _call("POST", f"{url}/status/nodes/{node_id}/progress", params={"token": token}, json={"stage": stage})
        seen.append(resp.status_code)
        assert resp.status_code == 200, resp.text


def _postmaster_pid(data) -> int:
    return int((data / "pg" / "postmaster.pid").read_text().split()[0])


def test_postgres_killed_by_pid_mid_stream_loses_nothing_and_serve_restarts_it(tmp_path):
    server = RunningServer(env={"BOOTFLEET_DATABASE_URL": None, "BOOTFLEET_LOG_LEVEL": "INFO"}, threads=8,
                           data=tmp_path / "serve", timeout=90)
    try:
        admin = {"Authorization": f"Bearer {server.admin_token}"}
        assert requests.post(server.url + "/config/api/v1/profiles", json=PROFILE, headers=admin).status_code == 201
        nodes = []
        for i in range(6):
            mac = f"52:54:00:fa:00:{i:02x}"
            resp = requests.post(server.url + "/config/api/v1/nodes", headers=admin,
                                 json={"macs": [mac], "hostname": f"f{i}", "profile": "fault"})
            assert resp.status_code == 201, resp.text
            nodes.append((mac, resp.json()["id"]))
        serve_pid = server.proc.pid
        old_pg = _postmaster_pid(server.data)

        started, statuses, errors = threading.Event(), [], []

        def run(mac, node_id):
            try:
                _install(server.url, mac, node_id, started, statuses, pause=0.6)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=run, args=node) for node in nodes]
        for t in threads:
            t.start()
        assert started.wait(30)
        time.sleep(0.3)
        os.kill(old_pg, signal.SIGKILL)  # PostgreSQL dies mid-stream
        for t in threads:
            t.join(120)
        assert errors == []

        # serve noticed, said so, and started it again; bootfleet itself was not restarted.
        output = server.output()
        assert f"the embedded PostgreSQL (pid {old_pg}) is not running; starting it again" in output, output[-3000:]
        assert "the embedded PostgreSQL is running again" in output
        assert _postmaster_pid(server.data) != old_pg and psutil.pid_exists(_postmaster_pid(server.data))
        assert server.proc.poll() is None and server.proc.pid == serve_pid
        # Every node got its script and every report is recorded once, in order.
        for _mac, node_id in nodes:
            events = requests.get(f"{server.url}/status/nodes/{node_id}/events", headers=admin).json()["events"]
            stages = [e["stage"] for e in events if e["kind"] == "stage"]
            assert stages == ["registered", "booting", *STAGES], (node_id, stages)
            ids = [e["id"] for e in events]
            assert ids == sorted(ids)
        new_pg = _postmaster_pid(server.data)
    finally:
        server.stop()
    # serve stopping its PostgreSQL on exit is not a death to restart from: it stays stopped.
    gone = psutil.wait_procs([psutil.Process(new_pg)], timeout=15)[0] if psutil.pid_exists(new_pg) else [new_pg]
    assert gone, "the embedded PostgreSQL outlived serve"


def test_bootfleet_restarted_under_load_answers_no_5xx(database, clean_db, tmp_path):
    """Stopped (SIGTERM: gunicorn finishes what it is doing) and started again on the same port
    while clients keep asking: they may find nobody listening for a moment, never a 5xx."""
    first = RunningServer(data=tmp_path / "serve")
    port = first.port
    resp = requests.post(first.url + "/config/api/v1/profiles", json=PROFILE, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    assert requests.post(first.url + "/config/api/v1/nodes", headers=ADMIN,
                         json={"macs": ["52:54:00:fb:00:01"], "profile": "fault"}).status_code == 201
    statuses: list[int] = []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            for method, path in [("GET", "/boot/ipxe?mac=52:54:00:fb:00:01"), ("GET", "/status/events?limit=5"),
                                 ("GET", "/config/api/v1/nodes"), ("GET", "/healthz")]:
                try:
                    statuses.append(requests.request(method, f"http://127.0.0.1:{port}{path}", headers=ADMIN,
                                                     timeout=10).status_code)
                except requests.ConnectionError:
                    time.sleep(0.02)

    threads = [threading.Thread(target=load) for _ in range(4)]
    second = None
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        before = len(statuses)
        first.stop()
        second = RunningServer(port=port, data=tmp_path / "serve")
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        if second:
            second.stop()
    assert before > 0 and len(statuses) > before  # answers before and after the restart
    assert [s for s in statuses if s >= 500] == []
