"""The `local` provider end to end: `bootfleet deployment create --provider local`
starts real QEMU VMs (lib/common/providers/vpc/qemu.py) whose iPXE firmware network-boots from the
running server and is recognised by the MAC the provisioner recorded; scale and
delete stop them. The same provisioning path as the cloud (what `make demo` uses).

Needs qemu-system-x86_64, Debian's ipxe and busybox (skips with the apt-get command;
fails under CI=true so CI never skips it silently).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests
from support import ADMIN, ROOT
from support.server import RunningServer

from bootfleet.providers.vpc import qemu

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def local_server(database):
    try:
        qemu.find_tools()
    except qemu.QemuUnavailableError as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the local provider test: {e}")
        pytest.skip(str(e))
    srv = RunningServer(env={"BOOTFLEET_BASE_URL": ""})
    yield srv
    for record in (srv.data / "vms").glob("*.json"):  # never leave a VM behind
        pid = json.loads(record.read_text())["pid"]
        try:
            os.killpg(pid, 15)
        except ProcessLookupError:
            pass
    srv.stop()


def cli(server, *args: str) -> str:
    env = {**server.env, "BOOTFLEET_URL": server.url}
    result = subprocess.run([sys.executable, "-m", "bootfleet.cli", "--json", "--yes", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def api(server, path: str, **params):
    resp = requests.get(server.url + path, headers=ADMIN, params=params, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def vm_pids(server) -> dict[str, int]:
    return {p.stem: json.loads(p.read_text())["pid"] for p in (server.data / "vms").glob("*.json")}


def alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def test_local_deployment_boots_vms_scales_and_deletes(local_server, clean_db):
    srv = local_server
    requests.post(srv.url + "/config/api/v1/profiles", headers=ADMIN, timeout=30, json={
        "name": "demo", "kernel": "demo/vmlinuz", "args": "console=ttyS0"}).raise_for_status()
    created = json.loads(cli(srv, "deployment", "create", "--name", "demo", "--profile", "demo", "--provider", "local",
                             "--count", "2", "--placement", "memory=256"))
    assert created["provisioning"]["created"] == ["demo-0", "demo-1"], created
    pids = vm_pids(srv)
    assert sorted(pids) == ["demo-0", "demo-1"] and all(alive(p) for p in pids.values())

    # Each VM's iPXE chains bootfleet and is recognised by the MAC the provisioner recorded.
    def booted():
        nodes = api(srv, "/config/api/v1/nodes", deployment="demo")["items"]
        return nodes if len(nodes) == 2 and all(n["stage"] == "booting" for n in nodes) else None

    nodes = wait_for(booted, 120, "both VMs to ask bootfleet for their script")
    records = {p.stem: json.loads(p.read_text()) for p in (srv.data / "vms").glob("*.json")}
    assert {n["hostname"]: n["macs"] for n in nodes} == {k: [r["mac"] for r in [v]] for k, v in records.items()}

    cli(srv, "deployment", "scale", "demo", "1")
    wait_for(lambda: not alive(pids["demo-1"]), 30, "demo-1's VM to stop")
    assert alive(pids["demo-0"])
    report = json.loads(cli(srv, "deployment", "reconcile", "demo"))
    assert report["errors"] == []

    cli(srv, "deployment", "delete", "demo")
    wait_for(lambda: json.loads(cli(srv, "deployment", "reconcile", "demo"))["state"] == "deleted", 30,
             "the deployment to be deleted")
    assert not alive(pids["demo-0"]) and vm_pids(srv) == {}
    stages = {n["stage"] for n in api(srv, "/config/api/v1/nodes", deployment="demo", deleted="true")["items"]}
    assert stages == {"deleted"}
