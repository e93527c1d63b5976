"""The `bootfleet` command as an operator uses it (issue 16): from another directory, against
a running `bootfleet serve`, with nothing but what serve wrote to the config directory."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest
import requests
from support import ADMIN
from support.server import RunningServer

# What a new shell has: none of the test run's BOOTFLEET_ settings.
CLIENT_ENV = {k: v for k, v in os.environ.items() if not k.startswith("BOOTFLEET_")}


@pytest.fixture(scope="module")
def srv(database):
    """A server whose scheduled cleanup is off (BOOTFLEET_CLEANUP_EVERY=0), where a booting
    node is stuck after 1 s, and which remembers at most 3 unknown machines."""
    server = RunningServer(env={"BOOTFLEET_CLEANUP_EVERY": "0", "BOOTFLEET_STAGE_TIMEOUTS": "booting=1",
                                "BOOTFLEET_UNKNOWN_MAX": "3"})
    yield server
    server.stop()


def run(server, *args, cwd, check=True, env=None, input=None):
    """`bootfleet ARGS` in `cwd` as a user's shell runs it: no flags, no BOOTFLEET_ variables;
    it finds the server through the config directory that serve wrote."""
    environ = {**CLIENT_ENV, "XDG_CONFIG_HOME": str(server.data / "config"), **(env or {})}
    result = subprocess.run([sys.executable, "-m", "bootfleet.cli", *args], cwd=cwd, env=environ,
                            capture_output=True, text=True, timeout=120, input=input, check=False)
    if check:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0, result.stdout
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith("bootfleet: ")
    return result


def api(server, method, path, **kwargs):
    resp = requests.request(method, server.url + path, headers=ADMIN, timeout=30, **kwargs)
    assert resp.status_code < 400, resp.text
    return resp.json() if resp.content else None


# --- 1: from anywhere --------------------------------------------------------------------------


def test_serve_writes_the_client_settings_and_the_cli_works_from_anywhere(srv, tmp_path, clean_db):
    config = srv.data / "config" / "bootfleet" / "client.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    saved = json.loads(config.read_text())
    assert saved["url"] == srv.url and saved["admin_token"] == srv.admin_token
    assert saved["data_dir"] == str(srv.data.resolve())

    created = json.loads(run(srv, "node", "create", "--mac", "52:54:00:e1:00:01", "--json", cwd=tmp_path).stdout)
    assert created["macs"] == ["52:54:00:e1:00:01"]
    assert "52:54:00:e1:00:01" in run(srv, "node", "list", cwd=tmp_path).stdout
    # Flags win over variables, variables over the file.
    wrong = run(srv, "node", "list", cwd=tmp_path, check=False, env={"BOOTFLEET_ADMIN_TOKEN": "nope"})
    assert "403" in wrong.stderr and "BOOTFLEET_ADMIN_TOKEN" in wrong.stderr
    assert run(srv, "--token", srv.admin_token, "node", "list", cwd=tmp_path,
               env={"BOOTFLEET_ADMIN_TOKEN": "nope"}).returncode == 0

    # migrate and images act on the server's database and data dir, not the current directory's.
    assert "up to date" in run(srv, "migrate", cwd=tmp_path).stdout
    kernel = tmp_path / "k"
    kernel.write_bytes(b"kernel bytes")
    run(srv, "images", "upload", "--key", "anywhere/vmlinuz", str(kernel), cwd=tmp_path)
    assert requests.get(srv.url + "/images/anywhere/vmlinuz", timeout=10).content == b"kernel bytes"
    assert not (tmp_path / ".data").exists()


def test_without_a_server_or_settings_the_cli_says_what_to_do(tmp_path):
    env = {**CLIENT_ENV, "XDG_CONFIG_HOME": str(tmp_path / "empty")}
    result = subprocess.run([sys.executable, "-m", "bootfleet.cli", "images", "list"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1 and "start bootfleet serve" in result.stderr and not (tmp_path / ".data").exists()


def test_a_busy_port_is_one_line_naming_port(srv, tmp_path):
    result = run(srv, "serve", "--port", str(srv.port), cwd=tmp_path, check=False)
    assert f"port {srv.port}" in result.stderr and "--port" in result.stderr
    assert "bootfleet is running" not in result.stdout


def test_bad_url_and_missing_files_are_one_line(srv, tmp_path):
    assert "http://127.0.0.1:8080" in run(srv, "--url", "127.0.0.1:8091", "node", "list", cwd=tmp_path,
                                          check=False).stderr
    assert "no-such.json" in run(srv, "node", "create", "--from-file", "no-such.json", cwd=tmp_path,
                                 check=False).stderr
    (tmp_path / "nodes.csv").write_text("mac,hostname\n52:54:00:e1:00:09,x\n")
    assert "node import" in run(srv, "node", "create", "--from-file", "nodes.csv", cwd=tmp_path, check=False).stderr
    assert "--template" in run(srv, "profile", "create", "--name", "p", "--kernel", "k", "--template", "nope.j2",
                               cwd=tmp_path, check=False).stderr


# --- 2: images a profile names -------------------------------------------------------------------


def test_a_profile_naming_a_missing_image_warns_and_boot_says_so(srv, tmp_path, clean_db):
    result = run(srv, "profile", "create", "--name", "gone", "--kernel", "gone/vmlinuz", cwd=tmp_path)
    assert "warning" in result.stderr and "gone/vmlinuz" in result.stderr
    node = json.loads(run(srv, "--json", "node", "create", "--mac", "52:54:00:e2:00:01", "--profile", "gone",
                          cwd=tmp_path).stdout)
    requests.get(srv.url + "/boot/ipxe", params={"mac": "52:54:00:e2:00:01"}, timeout=10).raise_for_status()
    requests.get(srv.url + "/boot/ipxe", params={"mac": "52:54:00:e2:00:01"}, timeout=10).raise_for_status()
    events = json.loads(run(srv, "node", "events", node["id"], "--json", cwd=tmp_path).stdout)["events"]
    missing = [e for e in events if e["kind"] == "image-missing"]
    assert len(missing) == 1 and "gone/vmlinuz" in missing[0]["message"]  # said once, not on every boot

    (tmp_path / "vmlinuz").write_bytes(b"k")
    run(srv, "images", "upload", "--key", "gone/vmlinuz", str(tmp_path / "vmlinuz"), cwd=tmp_path)
    result = run(srv, "profile", "update", "gone", "--args", "console=ttyS0", cwd=tmp_path)
    assert "warning" not in result.stderr


def test_make_run_provides_the_demo_images_and_takes_port():
    plan = subprocess.run(["make", "-n", "run", "PORT=8099"], cwd=srv_root(), capture_output=True, text=True,
                          check=False)
    assert "node_image.py --out .data/images" in plan.stdout and "serve --port 8099" in plan.stdout
    plan = subprocess.run(["make", "-n", "demo", "PORT=8099"], cwd=srv_root(), capture_output=True, text=True,
                          check=False)
    assert "demo.py --port 8099" in plan.stdout


def srv_root():
    from support import ROOT

    return ROOT


# --- 3: filters and views ------------------------------------------------------------------------


def test_filters_lookups_events_and_confirmations(srv, tmp_path, clean_db, database):
    run(srv, "profile", "create", "--name", "filt", "--kernel", "k", cwd=tmp_path)
    run(srv, "deployment", "create", "--name", "rack-f", "--profile", "filt", cwd=tmp_path)
    run(srv, "deployment", "create", "--name", "gone-f", "--profile", "filt", cwd=tmp_path)
    a = json.loads(run(srv, "node", "create", "--mac", "52:54:00:e3:00:01", "--hostname", "fa", "--label", "rack=r1",
                       "--deployment", "rack-f", "--json", cwd=tmp_path).stdout)
    b = json.loads(run(srv, "node", "create", "--mac", "52:54:00:e3:00:02", "--hostname", "fb", "--label", "rack=r2",
                       "--profile", "filt", "--json", cwd=tmp_path).stdout)

    def ids(*args):
        return {n["id"] for n in json.loads(run(srv, "node", "list", *args, "--json", cwd=tmp_path).stdout)["items"]}

    assert ids("--mac", "52-54-00-E3-00-01") == {a["id"]}
    assert ids("--hostname", "fb") == {b["id"]}
    assert ids("--label", "rack=r2") == {b["id"]}
    assert ids("--deployment", "rack-f") == {a["id"]}
    assert ids("--deployment", "-") == {b["id"]}
    assert ids("--stage", "registered") == {a["id"], b["id"]}

    # get by id, unique prefix, MAC or hostname
    for key in (a["id"], a["id"][:8], "52:54:00:e3:00:01", "fa"):
        assert json.loads(run(srv, "node", "get", key, "--json", cwd=tmp_path).stdout)["id"] == a["id"]
    assert "not found" in run(srv, "node", "get", "nobody", cwd=tmp_path, check=False).stderr

    # destructive commands ask; without a terminal they need --yes
    refused = run(srv, "node", "delete", "fb", cwd=tmp_path, check=False)
    assert "--yes" in refused.stderr and ids("--hostname", "fb") == {b["id"]}
    run(srv, "node", "delete", "fb", "--yes", cwd=tmp_path)
    assert ids() == {a["id"]}
    d = json.loads(run(srv, "node", "create", "--mac", "52:54:00:e3:00:04", "--json", cwd=tmp_path).stdout)
    from bootfleet.db import nodes

    with database.transaction() as tx:  # what cleanup does to a node whose server went
        nodes.set_stage(tx, d["id"], "deleted", "test")
    assert ids() == {a["id"]} and ids("--all") == {a["id"], d["id"]}  # deleted nodes only when asked

    run(srv, "deployment", "delete", "gone-f", "-y", cwd=tmp_path)
    states = json.loads(run(srv, "deployment", "list", "--state", "active", "--json", cwd=tmp_path).stdout)
    assert [d["name"] for d in states["items"]] == ["rack-f"]

    history = run(srv, "node", "events", "fa", cwd=tmp_path).stdout
    assert "registered" in history and "node registered" in history
    newest = json.loads(run(srv, "events", "--tail", "2", "--json", cwd=tmp_path).stdout)["events"]
    assert len(newest) == 2 and newest[0]["id"] > newest[1]["id"]  # newest first
    assert json.loads(run(srv, "events", "--since", "1h", "--json", cwd=tmp_path).stdout)["events"]
    assert json.loads(run(srv, "events", "--since", "0s", "--json", cwd=tmp_path).stdout)["events"] == []
    assert "10m" in run(srv, "events", "--since", "yesterday", cwd=tmp_path, check=False).stderr
    assert "invalid choice" in run(srv, "node", "list", "--stage", "nope", cwd=tmp_path, check=False).stderr

    follow = subprocess.Popen([sys.executable, "-m", "bootfleet.cli", "events", "--follow", "--tail", "1",
                               "--interval", "0.3"], cwd=tmp_path, stdout=subprocess.PIPE, text=True,
                              env={**CLIENT_ENV, "XDG_CONFIG_HOME": str(srv.data / "config")})
    try:
        time.sleep(2)
        run(srv, "node", "create", "--mac", "52:54:00:e3:00:03", "--hostname", "fc", cwd=tmp_path)
        time.sleep(2)
    finally:
        follow.terminate()
        out = follow.communicate(timeout=10)[0]
    assert "node registered" in out.splitlines()[-1]


def test_version_and_completion(srv, tmp_path):
    assert run(srv, "--version", cwd=tmp_path).stdout.startswith("bootfleet ")
    out = tmp_path / "completions"
    line = "bootfleet node li"
    env = {**CLIENT_ENV, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
           "_ARGCOMPLETE_STDOUT_FILENAME": str(out)}
    subprocess.run([sys.executable, "-m", "bootfleet.cli"], cwd=tmp_path, env=env, timeout=60, capture_output=True,
                   check=False)
    assert "list" in out.read_text().split()


def test_cleanup_errors_exit_non_zero_and_status_shows_errors(srv, tmp_path):
    result = run(srv, "status", "no-such-deployment", cwd=tmp_path, check=False)
    assert "404" in result.stderr


# --- 4: bulk import ------------------------------------------------------------------------------


def test_import_csv_and_json_all_or_nothing(srv, tmp_path, clean_db):
    run(srv, "profile", "create", "--name", "bulk", "--kernel", "k", cwd=tmp_path)
    run(srv, "deployment", "create", "--name", "rack-b", "--profile", "bulk", cwd=tmp_path)
    rows = ["mac,hostname,ip,labels,profile,deployment"]
    rows += [f"52:54:01:00:{i // 256:02x}:{i % 256:02x},bulk{i},10.1.{i // 256}.{i % 256},rack=r{i % 4};role=w,"
             f"bulk,{'rack-b' if i % 2 else ''}" for i in range(600)]
    bad = rows[:300] + ["52:54:01:00:00:01,dup,,,bulk,"] + rows[300:]  # a MAC twice, and a bad row
    bad[5] = bad[5].replace(",bulk4,", ",Not_A_Hostname,")
    (tmp_path / "bad.csv").write_text("\n".join(bad) + "\n")
    refused = run(srv, "node", "import", "bad.csv", cwd=tmp_path, check=False)
    assert "nothing imported" in refused.stderr and "row 5" in refused.stderr and "also in row" in refused.stderr
    assert api(srv, "GET", "/config/api/v1/nodes", params={"limit": 1})["total"] == 0

    (tmp_path / "fleet.csv").write_text("\n".join(rows) + "\n")
    done = run(srv, "node", "import", "fleet.csv", cwd=tmp_path)
    assert "imported 600 nodes" in done.stdout
    listed = api(srv, "GET", "/config/api/v1/nodes", params={"label": "rack=r1", "deployment": "rack-b",
                                                               "limit": 1000})
    assert listed["total"] == 150 and all(n["labels"] == {"rack": "r1", "role": "w"} for n in listed["items"])

    (tmp_path / "more.json").write_text(json.dumps([{"mac": "52:54:01:ff:00:01", "hostname": "j1"},
                                                    {"mac": "52:54:01:00:00:07", "hostname": "j2"}]))
    clash = run(srv, "node", "import", "more.json", cwd=tmp_path, check=False)
    assert "row 2" in clash.stderr and "already belongs" in clash.stderr
    assert api(srv, "GET", "/config/api/v1/nodes", params={"hostname": "j1"})["total"] == 0


# --- 5: unknown machines, adopt, boot script preview -----------------------------------------------


def test_unknown_machines_are_remembered_capped_and_adopted(srv, tmp_path, clean_db):
    run(srv, "profile", "create", "--name", "adoptp", "--kernel", "adopt/vmlinuz", "--args", "st={{ status_url }}",
        cwd=tmp_path)
    for _ in range(3):
        requests.get(srv.url + "/boot/ipxe", params={"mac": "52:54:00:e5:00:01"}, timeout=10)
    listed = json.loads(run(srv, "node", "unknown", "--json", cwd=tmp_path).stdout)["items"]
    assert [(m["mac"], m["attempts"]) for m in listed] == [("52:54:00:e5:00:01", 3)]
    assert listed[0]["last_address"] == "127.0.0.1"
    events = json.loads(run(srv, "events", "--json", cwd=tmp_path).stdout)["events"]
    assert len([e for e in events if e["kind"] == "unknown-boot"]) == 1  # rate-limited: one event, three tries

    for i in range(2, 7):  # a scan of made-up MACs: the table keeps the 3 most recent (BOOTFLEET_UNKNOWN_MAX)
        requests.get(srv.url + "/boot/ipxe", params={"mac": f"52:54:00:e5:00:0{i}"}, timeout=10)
    assert json.loads(run(srv, "node", "unknown", "--json", cwd=tmp_path).stdout)["total"] == 3

    adopted = json.loads(run(srv, "node", "adopt", "52:54:00:e5:00:06", "--profile", "adoptp", "--hostname", "ad1",
                             "--json", cwd=tmp_path).stdout)
    assert adopted["macs"] == ["52:54:00:e5:00:06"] and adopted["stage"] == "registered"
    assert "52:54:00:e5:00:06" not in run(srv, "node", "unknown", cwd=tmp_path).stdout
    assert "profile" in run(srv, "node", "adopt", "52:54:00:e5:00:05", cwd=tmp_path, check=False).stderr

    before = api(srv, "GET", f"/status/events?node={adopted['id']}")["events"]
    script = run(srv, "node", "script", "ad1", cwd=tmp_path)
    assert script.stdout.startswith("#!ipxe") and "/images/adopt/vmlinuz st=" in script.stdout
    assert "adopt/vmlinuz" in script.stderr  # not uploaded: said
    after = api(srv, "GET", f"/config/api/v1/nodes/{adopted['id']}")
    assert after["stage"] == "registered" and after["last_seen"] is None
    assert api(srv, "GET", f"/status/events?node={adopted['id']}")["events"] == before
    served = requests.get(srv.url + "/boot/ipxe", params={"mac": "52:54:00:e5:00:06"}, timeout=10).text
    strip = [line for line in served.splitlines() if "token=" not in line]
    assert strip == [line for line in script.stdout.splitlines() if "token=" not in line]  # the same script


# --- 6: nodes outside deployments, and cleanup on a schedule ----------------------------------------


def test_stuck_and_failed_outside_deployments(srv, tmp_path, clean_db):
    run(srv, "profile", "create", "--name", "lone", "--kernel", "k", cwd=tmp_path)
    run(srv, "node", "create", "--mac", "52:54:00:e6:00:01", "--hostname", "lone1", "--profile", "lone", cwd=tmp_path)
    requests.get(srv.url + "/boot/ipxe", params={"mac": "52:54:00:e6:00:01"}, timeout=10).raise_for_status()
    time.sleep(2)  # past BOOTFLEET_STAGE_TIMEOUTS booting=1
    result = run(srv, "status", cwd=tmp_path, check=False)
    assert result.returncode == 2, result.stderr
    assert "(outside deployments)" in result.stdout and "stuck" in result.stdout and "lone1" in result.stdout
    assert "booting (stuck)" in run(srv, "node", "list", "--deployment", "-", cwd=tmp_path).stdout
    assert json.loads(run(srv, "node", "get", "lone1", "--json", cwd=tmp_path).stdout)["stuck"] is True
    standalone = api(srv, "GET", "/status/standalone")
    assert standalone["deployment"] is None and [n["hostname"] for n in standalone["stuck"]] == ["lone1"]


def test_serve_runs_cleanup_on_its_schedule(tmp_path, clean_db):
    with RunningServer(env={"BOOTFLEET_CLEANUP_EVERY": "1", "BOOTFLEET_STAGE_TIMEOUTS": "booting=1"}) as sched:
        assert "cleanup       every 1 s" in sched.output()
        run(sched, "profile", "create", "--name", "sched", "--kernel", "k", cwd=tmp_path)
        run(sched, "node", "create", "--mac", "52:54:00:e6:00:02", "--hostname", "lone2", "--profile", "sched",
            cwd=tmp_path)
        requests.get(sched.url + "/boot/ipxe", params={"mac": "52:54:00:e6:00:02"}, timeout=10).raise_for_status()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            node = api(sched, "GET", "/config/api/v1/nodes/lone2")
            if node["stage"] == "failed":
                break
            time.sleep(0.5)
        assert node["stage"] == "failed"
        status = run(sched, "status", "-", cwd=tmp_path, check=False)
        assert status.returncode == 2 and "failed" in status.stdout and "timed out in booting" in status.stdout


# --- doctor -------------------------------------------------------------------------------------


def test_doctor(srv, tmp_path, clean_db):
    run(srv, "profile", "create", "--name", "doc", "--kernel", "doc/vmlinuz", cwd=tmp_path)
    result = run(srv, "doctor", cwd=tmp_path, check=False)
    assert "doctor: " in result.stderr
    for name in ("gateway", "database", "migrations", "clock", "boot", "client address"):
        assert any(line.startswith("ok") and name in line for line in result.stdout.splitlines()), result.stdout
    # Straight to the local server, no gateway: the TCP peer is the client, loopback is fine.
    assert any("client address" in line and "127.0.0.1 via the peer" in line and "inside BOOTFLEET_BOOT_NETWORKS"
               in line for line in result.stdout.splitlines()), result.stdout
    assert any(line.startswith("FAIL") and "images of doc" in line and "doc/vmlinuz" in line
               for line in result.stdout.splitlines())
    (tmp_path / "vmlinuz").write_bytes(b"k")
    run(srv, "images", "upload", "--key", "doc/vmlinuz", str(tmp_path / "vmlinuz"), cwd=tmp_path)
    assert "FAIL" not in run(srv, "doctor", cwd=tmp_path).stdout


# --- watch over a keep-alive the server closed ------------------------------------------------------


def test_the_client_retries_a_get_on_a_connection_the_server_closed():
    """`bootfleet watch` died with a false "cannot reach bootfleet" when a poll went out on a
    kept-alive connection just as the server closed it. This server answers the first request
    of each connection and keeps it open, then drops the connection when the next request
    arrives on it, as a keep-alive timeout racing the poll does."""
    import http.server
    import threading

    from bootfleet.cli.client import Client

    class Racing(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle(self):
            self.served = 0
            super().handle()

        def do_GET(self):
            if self.served:  # the keep-alive "timed out" as this request came in
                self.close_connection = True
                return
            self.served += 1
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Racing)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        client = Client(f"http://127.0.0.1:{httpd.server_address[1]}", None)
        for _ in range(40):
            assert client.call("GET", "/status/deployments/x") == {"ok": True}
            time.sleep(0.02)
    finally:
        httpd.shutdown()


def test_import_and_preview_problems_are_4xx_naming_the_row_or_the_profile(srv, tmp_path, clean_db):
    (tmp_path / "n.json").write_text(json.dumps([{"mac": "52:54:01:aa:00:01"},
                                                 {"mac": "52:54:01:aa:00:02", "deployment": "nowhere"}]))
    result = run(srv, "node", "import", "n.json", cwd=tmp_path, check=False)
    assert "400" in result.stderr and "row 2" in result.stderr and "nowhere" in result.stderr
    # Saved (a sample node has every label); this node has no `nothing` label (issue 25: test_template_errors.py).
    run(srv, "profile", "create", "--name", "broken", "--kernel", "k", "--args", "x={{ node.labels.nothing }}",
        cwd=tmp_path)
    run(srv, "node", "create", "--mac", "52:54:01:aa:00:03", "--hostname", "br", "--profile", "broken", cwd=tmp_path)
    result = run(srv, "node", "script", "br", cwd=tmp_path, check=False)
    assert "409" in result.stderr and "nothing" in result.stderr
