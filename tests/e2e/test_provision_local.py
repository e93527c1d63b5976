"""The `local` provider end to end: `bootfleet deployment create --provider local`
starts real QEMU VMs (lib/common/bootfleet/providers/vpc/qemu.py) whose iPXE firmware network-boots from the
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
    # Reaped, not a zombie of the server's worker, and its logs and script gone with it (issue 25).
    wait_for(lambda: not os.path.exists(f"/proc/{pids['demo-1']}"), 30, "demo-1's QEMU to be reaped")
    assert sorted(p.name for p in (srv.data / "vms").iterdir() if p.name.startswith("demo-1.")) == []
    assert any(p.name.startswith("demo-0.") and p.name.endswith(".serial.log") for p in (srv.data / "vms").iterdir())
    report = json.loads(cli(srv, "deployment", "reconcile", "demo"))
    assert report["errors"] == []

    cli(srv, "deployment", "delete", "demo")
    wait_for(lambda: json.loads(cli(srv, "deployment", "reconcile", "demo"))["state"] == "deleted", 30,
             "the deployment to be deleted")
    assert not alive(pids["demo-0"]) and vm_pids(srv) == {}
    wait_for(lambda: not os.path.exists(f"/proc/{pids['demo-0']}"), 30, "demo-0's QEMU to be reaped")
    assert list((srv.data / "vms").iterdir()) == []  # the deleted deployment's VM logs are gone
    stages = {n["stage"] for n in api(srv, "/config/api/v1/nodes", deployment="demo", deleted="true")["items"]}
    assert stages == {"deleted"}


def test_a_created_server_installs_to_ready_through_its_enrolment_secret(database, clean_db, tmp_path):
    """The enrolment path end to end: the local provider's VM runs the user data the
    provisioner made (the chainloader with the server's secret), and boot answers it only
    with that secret: the profile requires it and the server's address (loopback) is no
    boot network here."""
    from .node_image import INSTALL, NodeImageUnavailableError, build

    try:
        qemu.find_tools()
        image = build()
    except (qemu.QemuUnavailableError, NodeImageUnavailableError) as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the enrolment e2e: {e} ({INSTALL})")
        pytest.skip(str(e))
    images = tmp_path / "images"
    srv = RunningServer(env={"BOOTFLEET_BASE_URL": "", "BOOTFLEET_BOOT_NETWORKS": "none",
                             "BOOTFLEET_IMAGES_DIR": str(images), "BOOTFLEET_LOG_LEVEL": "INFO"})
    try:
        env = {**srv.env, "BOOTFLEET_URL": srv.url, "BOOTFLEET_IMAGES_DIR": str(images)}
        subprocess.run([sys.executable, "-m", "bootfleet.cli", "images", "upload", "--prefix", "e2e",
                        str(image.kernel), str(image.initrd)], cwd=ROOT, env=env, check=True, capture_output=True)
        profile = {"name": "enrolled", "kernel": "e2e/vmlinuz", "initrds": ["e2e/initrd.img"],
                   "args": "console=ttyS0 panic=5 bootfleet.node={{ node.id }} bootfleet.config={{ config_url }}"
                           " bootfleet.status={{ status_url }}",
                   "config_format": "cloud-init", "config_template": "#cloud-config\nhostname: {{ node.hostname }}\n",
                   "require_secret": True}
        assert requests.post(srv.url + "/config/api/v1/profiles", json=profile, headers=ADMIN, timeout=30).ok
        created = json.loads(cli(srv, "deployment", "create", "--name", "sealed", "--profile", "enrolled", "--count", "1",
                                 "--provider", "local"))
        assert created["provisioning"]["created"] == ["sealed-0"], created
        script = (srv.data / "vms" / "sealed-0.ipxe").read_text()
        assert "&secret=" in script  # the VM runs the provisioner's user data

        def ready():
            (node,) = api(srv, "/config/api/v1/nodes", deployment="sealed")["items"]
            return node if node["stage"] == "ready" else None

        node = wait_for(ready, 300, "the VM to install and report ready")
        events = api(srv, f"/status/nodes/{node['id']}/events")["events"]
        assert [e["stage"] for e in events if e["kind"] == "stage"] == [
            "provisioning", "booting", "configuring", "installing", "rebooting", "ready"], events
        assert node["enrolled"] is True
        # The same MAC without the secret, from the same address, gets nothing.
        answer = requests.get(f"{srv.url}/boot/ipxe", params={"mac": node["macs"][0]}, timeout=10).text
        assert "no boot script for this machine" in answer
    finally:
        for record in (srv.data / "vms").glob("*.json"):
            try:
                os.killpg(json.loads(record.read_text())["pid"], 15)
            except ProcessLookupError:
                pass
        srv.stop()
