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
                            capture_output=True, text=True, timeout=120, input=input)
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
                            capture_output=True, text=True, timeout=60)
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
    plan = subprocess.run(["make", "-n", "run", "PORT=8099"], cwd=srv_root(), capture_output=True, text=True)
    assert "node_image.py --out .data/images" in plan.stdout and "serve --port 8099" in plan.stdout
    plan = subprocess.run(["make", "-n", "demo", "PORT=8099"], cwd=srv_root(), capture_output=True, text=True)
    assert "demo.py --port 8099" in plan.stdout


def srv_root():
    from support import ROOT

    return ROOT
