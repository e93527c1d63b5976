"""Signed webhooks (issue 23, part 3), against a running `bootfleet serve` whose schedule sends
what is due every second: a receiver that is down for a while gets, once it is up, each event
it subscribed to exactly once, signed with HMAC-SHA256 (X-Bootfleet-Signature-256, GitHub's
convention), every attempt visible in `bootfleet webhook deliveries`."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import re
import socket
import threading
import time

import pytest
import requests
from support import ADMIN
from support.helpers import PROFILE
from support.server import RunningServer

from functional.test_cli_operator import run

API = "/config/api/v1"


class Receiver:
    """A webhook receiver on 127.0.0.1, started when the test says. Down until then: its port is
    bound but not listening, so every attempt is refused and no other server can take the port."""

    def __init__(self):
        self.got, self.server = [], None
        self.held = socket.socket()
        self.held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.held.bind(("127.0.0.1", 0))
        self.port = self.held.getsockname()[1]

    def start(self):
        got = self.got
        self.held.close()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                got.append({"headers": dict(self.headers), "body": body})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.held.close()
        if self.server:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture(scope="module")
def srv(database):
    server = RunningServer(env={"BOOTFLEET_CLEANUP_EVERY": "0", "BOOTFLEET_WEBHOOK_EVERY": "1",
                                "BOOTFLEET_WEBHOOK_BACKOFF": "1", "BOOTFLEET_WEBHOOK_ALLOW": "127.0.0.1/32"})
    yield server
    server.stop()


def api(srv, method, path, body=None):
    resp = requests.request(method, srv.url + path, json=body, headers=ADMIN, timeout=30)
    assert resp.status_code < 400, resp.text
    return resp.json() if resp.content else None


def deliveries(srv, tmp_path, name="hooks"):
    return json.loads(run(srv, "webhook", "deliveries", name, "--json", cwd=tmp_path).stdout)["items"]


def wait_for(what, timeout=60.0, shows=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return
        time.sleep(0.2)
    raise AssertionError(f"not after {timeout} s: {shows()}")


def node_reports(srv, mac, deployment, hostname, stage):
    node = api(srv, "POST", f"{API}/nodes", {"macs": [mac], "hostname": hostname, "deployment": deployment})
    script = requests.get(srv.url + "/boot/ipxe", params={"mac": mac}, timeout=10).text
    token = re.search(r"token=([A-Za-z0-9._~-]+)", script).group(1)
    resp = requests.post(f"{srv.url}/status/nodes/{node['id']}/progress", params={"token": token},
                         json={"stage": stage, "message": f"{hostname} {stage}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    return node


def test_a_receiver_down_for_a_while_gets_each_event_once_signed(srv, clean_db, tmp_path):
    receiver = Receiver()
    url = f"http://127.0.0.1:{receiver.port}/hook"
    created = run(srv, "webhook", "create", "--name", "hooks", "--url", url,
                  "--events", "node.ready,node.failed,deployment.*", cwd=tmp_path).stdout
    secret = re.search(r"secret \(shown this once.*\): (\S+)", created).group(1)
    assert "hooks" in run(srv, "webhook", "list", cwd=tmp_path).stdout

    api(srv, "POST", f"{API}/profiles", PROFILE)  # profile.created: not subscribed
    api(srv, "POST", f"{API}/deployments", {"name": "rack1", "profile": "worker", "count": 2})
    ready = node_reports(srv, "52:54:00:be:00:01", "rack1", "n1", "ready")
    failed = node_reports(srv, "52:54:00:be:00:02", "rack1", "n2", "failed")
    try:
        # Down: every delivery is tried, fails, and is tried again after its backoff.
        wait_for(lambda: len(d := deliveries(srv, tmp_path)) == 3 and all(x["attempts"] >= 2 for x in d),
                 shows=lambda: json.dumps(deliveries(srv, tmp_path), default=str)[:3000])
        down = deliveries(srv, tmp_path)
        assert all(x["state"] == "pending" and "ConnectionError" in x["attempt_log"][0]["error"] for x in down), \
            json.dumps(down, default=str)[:3000]
        assert receiver.got == []

        receiver.start()
        wait_for(lambda: all(x["state"] == "delivered" for x in deliveries(srv, tmp_path)),
                 shows=lambda: json.dumps(deliveries(srv, tmp_path), default=str)[:3000])
        time.sleep(3)  # several more passes of the schedule: nothing is sent twice
    finally:
        receiver.stop()

    bodies = [json.loads(r["body"]) for r in receiver.got]
    assert sorted(b["event"] for b in bodies) == ["deployment.created", "node.failed", "node.ready"]
    assert len({b["id"] for b in bodies}) == 3
    for r, body in zip(receiver.got, bodies):
        expected = "sha256=" + hmac.new(secret.encode(), r["body"], hashlib.sha256).hexdigest()
        assert hmac.compare_digest(r["headers"]["X-Bootfleet-Signature-256"], expected)
        assert r["headers"]["X-Bootfleet-Delivery"] == body["id"]
        assert r["headers"]["X-Bootfleet-Event"] == body["event"]
    by_event = {b["event"]: b["data"] for b in bodies}
    assert by_event["node.ready"]["node_id"] == ready["id"] and by_event["node.failed"]["node_id"] == failed["id"]
    assert by_event["node.failed"]["message"] == "n2 failed"

    table = run(srv, "webhook", "deliveries", "hooks", cwd=tmp_path).stdout
    assert table.count("delivered") == 3 and "node.ready" in table


def test_urls_off_the_allow_list_and_bad_events_are_refused(srv, clean_db, tmp_path):
    off = run(srv, "webhook", "create", "--url", "https://hooks.example.com/x", "--events", "node.ready",
              cwd=tmp_path, check=False)
    assert "400" in off.stderr and "BOOTFLEET_WEBHOOK_ALLOW" in off.stderr
    for body, words in [
        ({"name": "a", "url": "http://127.0.0.1:1/", "events": []}, "events"),
        ({"name": "a", "url": "http://127.0.0.1:1/", "events": ["node ready"]}, "events"),
        ({"name": "a", "url": "ftp://127.0.0.1/", "events": ["*"]}, "url"),
        ({"name": "a", "url": "http://user:pw@127.0.0.1/", "events": ["*"]}, "url"),
        ({"name": "a", "url": "http://10.0.0.1/", "events": ["*"]}, "BOOTFLEET_WEBHOOK_ALLOW"),
    ]:
        resp = requests.post(srv.url + f"{API}/webhooks", json=body, headers=ADMIN, timeout=10)
        assert resp.status_code == 400 and words in resp.json()["error"], resp.text
    assert api(srv, "GET", f"{API}/webhooks")["items"] == []
    # The secret is shown once and never again.
    made = api(srv, "POST", f"{API}/webhooks", {"name": "b", "url": "http://127.0.0.1:9/", "events": ["*"]})
    assert made["secret"] and "secret" not in api(srv, "GET", f"{API}/webhooks/b")
    assert made["secret"] not in json.dumps(api(srv, "GET", f"{API}/audit"))
    run(srv, "webhook", "delete", "b", "--yes", cwd=tmp_path)
    assert api(srv, "GET", f"{API}/webhooks")["items"] == []
