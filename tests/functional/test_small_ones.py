"""The small ones of issue 25 (item 6), through the `bootfleet` command against a running server:
`watch` ends when nothing left can progress, `cleanup --dry-run` names what it would touch,
events name nodes by hostname."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests
from support import ADMIN
from support.helpers import token_from_script, user_cli
from support.server import RunningServer

CLIENT_ENV = {k: v for k, v in os.environ.items() if not k.startswith("BOOTFLEET_")}


@pytest.fixture(scope="module")
def srv(database):
    """Scheduled cleanup off; a booting node is past its timeout after 1 s."""
    server = RunningServer(env={"BOOTFLEET_CLEANUP_EVERY": "0", "BOOTFLEET_STAGE_TIMEOUTS": "booting=1"})
    yield server
    server.stop()


run = user_cli


def boot(srv, mac):
    return token_from_script(requests.get(f"{srv.url}/boot/ipxe?mac={mac}", timeout=30).text)


def report(srv, node_id, token, stage, message=""):
    resp = requests.post(f"{srv.url}/status/nodes/{node_id}/progress?token={token}",
                         json={"stage": stage, "message": message}, timeout=30)
    assert resp.status_code == 200, resp.text


@pytest.fixture
def rack(srv, clean_db, tmp_path):
    """A deployment rack1 of two nodes, n1 and n2, that booted: {hostname: (node, token)}."""
    run(srv, "profile", "create", "--name", "p", "--kernel", "k", "--args", "st={{ status_url }}", cwd=tmp_path)
    run(srv, "deployment", "create", "--name", "rack1", "--profile", "p", cwd=tmp_path)
    nodes = {}
    for i in (1, 2):
        node = json.loads(run(srv, "node", "create", "--mac", f"52:54:00:00:29:0{i}", "--hostname", f"n{i}",
                              "--deployment", "rack1", "--json", cwd=tmp_path).stdout)
        nodes[f"n{i}"] = (node, boot(srv, f"52:54:00:00:29:0{i}"))
    return nodes


def test_watch_ends_non_zero_when_nothing_left_can_progress(srv, rack, tmp_path):
    (n1, t1), (n2, t2) = rack["n1"], rack["n2"]
    report(srv, n1["id"], t1, "ready")
    report(srv, n2["id"], t2, "failed", "disk full")
    result = run(srv, "watch", "rack1", "--interval", "0.2", cwd=tmp_path, ok=False, timeout=60)
    assert "1 of 2 node(s) failed and nothing left can progress: n2 (disk full)" in result.stderr
    assert "bootfleet node reinstall" in result.stderr


def test_watch_goes_on_while_a_node_can_still_progress(srv, rack, tmp_path):
    (n1, t1), _ = rack["n1"], rack["n2"]
    report(srv, n1["id"], t1, "failed", "no disk")
    # n2 is still booting: watch waits for it (until its --timeout here).
    result = run(srv, "watch", "rack1", "--interval", "0.2", "--timeout", "1", cwd=tmp_path, ok=False, timeout=60)
    assert "not done after 1" in result.stderr


def test_cleanup_dry_run_names_what_it_would_touch(srv, rack, clean_db, tmp_path):
    import time

    time.sleep(1.2)  # both past the 1 s booting timeout (the server's setting for this module)
    with clean_db.transaction() as tx:
        before = tx.all("SELECT id, stage FROM node ORDER BY id")
    out = run(srv, "cleanup", "--dry-run", cwd=tmp_path).stdout
    assert "would touch:" in out
    for name in ("n1", "n2"):
        node = rack[name][0]
        assert f"node_timed_out         node {name} ({node['id']}), stage booting, message timed out in booting" in out
    with clean_db.transaction() as tx:
        assert tx.all("SELECT id, stage FROM node ORDER BY id") == before  # a dry run changes nothing


def test_events_name_nodes_by_hostname(srv, rack, tmp_path):
    n1, t1 = rack["n1"]
    report(srv, n1["id"], t1, "installing", "partitioning")
    out = run(srv, "events", "--tail", "5", cwd=tmp_path).stdout
    assert "n1" in out and n1["id"][:8] not in out
    feed = requests.get(f"{srv.url}/status/events", params={"node": "n1"}, headers=ADMIN, timeout=30).json()
    assert {e["hostname"] for e in feed["events"]} == {"n1"}


def _follow(srv, *extra):
    environ = {**CLIENT_ENV, "XDG_CONFIG_HOME": str(srv.data / "config")}
    return subprocess.Popen([sys.executable, "-m", "bootfleet.cli", "events", "--follow", "--interval", "0.3", *extra],
                            env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class Lines:
    """A stream's lines as they come (a reader thread: readline blocks)."""

    def __init__(self, stream):
        import queue
        import threading

        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line) for line in iter(stream.readline, "")],
                         daemon=True).start()

    def until(self, wanted: str, limit: float = 60) -> str:
        """The lines up to the first that holds `wanted`."""
        seen = []
        while True:
            seen.append(self.lines.get(timeout=limit))
            if wanted in seen[-1]:
                return "".join(seen)


def test_events_follow_reconnects_after_a_server_restart(database, clean_db, tmp_path):
    first = RunningServer(env={"BOOTFLEET_CLEANUP_EVERY": "0"})
    follower = _follow(first)
    out, err = Lines(follower.stdout), Lines(follower.stderr)
    try:
        run(first, "node", "create", "--mac", "52:54:00:00:29:11", "--hostname", "before-restart", cwd=tmp_path)
        out.until("before-restart")
        first.stop()
        err.until("reconnecting")
        second = RunningServer(env={"BOOTFLEET_CLEANUP_EVERY": "0"}, port=first.port, data=first.data)
        try:
            run(second, "node", "create", "--mac", "52:54:00:00:29:12", "--hostname", "after-restart", cwd=tmp_path)
            out.until("after-restart")  # the same command, still following
            assert "reconnected" in err.until("reconnected") and follower.poll() is None
        finally:
            second.stop()
    finally:
        follower.kill()
        follower.wait()


def test_ctrl_c_stops_serve_with_follow_clients_connected(database, tmp_path):
    """SIGINT to serve's process group (what Ctrl-C in its terminal sends) while two `events
    --follow` clients poll it: serve ends by itself, its workers exit without being killed."""
    import signal

    srv = RunningServer(env={"BOOTFLEET_CLEANUP_EVERY": "5"}, workers=2, new_session=True)
    followers = [_follow(srv) for _ in range(2)]
    try:
        run(srv, "node", "create", "--mac", "52:54:00:00:29:21", "--hostname", "seen", cwd=tmp_path)
        for follower in followers:
            Lines(follower.stdout).until("seen")
        os.killpg(srv.proc.pid, signal.SIGINT)
        srv.proc.wait(25)  # gunicorn's graceful timeout is 30 s: a worker still held then is SIGKILLed
        log = srv.output()
        assert "Shutting down: Master" in log and "SIGKILL" not in log and "WORKER TIMEOUT" not in log, log[-2000:]
    finally:
        for follower in followers:
            follower.kill()
            follower.wait()
        if srv.proc.poll() is None:
            srv.stop()


def test_scale_down_and_delete_finish_without_waiting_for_a_cleanup_run(database, clean_db, tmp_path):
    """A deployment of servers (the fake IBM Cloud VPC, tests/fakes/vpc_api.py) on a server whose
    scheduled cleanup is off: scaling down and deleting finish by themselves, with no other pass."""
    import time

    from fakes.vpc_api import API_KEY, FakeCloud
    from support.provisioning import PLACEMENT

    cloud = FakeCloud(boot_seconds=0.2, delete_seconds=1.0).start()
    srv = RunningServer(env={"BOOTFLEET_CLEANUP_EVERY": "0", "BOOTFLEET_IBMCLOUD_API_KEY": API_KEY,
                             "BOOTFLEET_IBM_IAM_URL": cloud.iam_url, "BOOTFLEET_VPC_URL": cloud.vpc_url,
                             "BOOTFLEET_TAGGING_URL": cloud.tagging_url, "BOOTFLEET_IBM_TIMEOUT": "2",
                             "BOOTFLEET_IBM_BACKOFF_MS": "50"})
    try:
        run(srv, "profile", "create", "--name", "p", "--kernel", "k", cwd=tmp_path)
        placement = [f"--placement={k}={v}" for k, v in PLACEMENT.items()]
        run(srv, "deployment", "create", "--name", "web", "--profile", "p", "--provider", "ibm", "--count", "2",
            *placement, cwd=tmp_path)

        def stages():
            answer = requests.get(f"{srv.url}/config/api/v1/nodes", params={"deployment": "web", "deleted": "true"},
                                  headers=ADMIN, timeout=30).json()
            return {n["hostname"]: n["stage"] for n in answer["items"]}

        def eventually(check, what):
            for _ in range(300):  # the fake deletes a server after 1 s; follow-up passes come every second
                if check():
                    return
                time.sleep(0.1)
            raise AssertionError(f"{what}: {stages()}")

        run(srv, "deployment", "scale", "web", "1", "--yes", cwd=tmp_path)
        eventually(lambda: stages().get("web-1") == "deleted", "web-1 deleted after the scale-down")
        assert stages()["web-0"] != "deleted"
        run(srv, "deployment", "delete", "web", "--yes", cwd=tmp_path)
        eventually(lambda: requests.get(f"{srv.url}/config/api/v1/deployments/web", headers=ADMIN,
                                        timeout=30).json()["state"] == "deleted", "the deployment deleted")
        assert set(stages().values()) == {"deleted"}
        assert cloud.servers() == []
    finally:
        srv.stop()
        cloud.stop()


def test_the_node_list_filters_stuck_nodes(srv, rack, tmp_path):
    import time

    n1, t1 = rack["n1"]
    report(srv, n1["id"], t1, "installing")  # n1 moves on; n2 stays booting past the module's 1 s timeout
    time.sleep(1.2)
    answer = requests.get(f"{srv.url}/config/api/v1/nodes", params={"stuck": "true"}, headers=ADMIN, timeout=30)
    assert [n["hostname"] for n in answer.json()["items"]] == ["n2"]
    bad = requests.get(f"{srv.url}/config/api/v1/nodes", params={"stuck": "maybe"}, headers=ADMIN, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"].startswith("stuck: ")
