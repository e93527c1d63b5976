"""Real iPXE in QEMU against the running system: firmware nobody here wrote boots
a real Linux kernel whose initramfs fetches its config and reports every stage.

    chainloader -> node script -> kernel + initrd (local folder, or presigned S3 URLs)
    -> /init fetches user-data with its token -> reports installing, rebooting, ready
    -> powers off; booted again, the node gets the local-disk script, not the installer,
    and the machine boots its local disk (BIOS: sanboot; UEFI: iPXE exits to the firmware).

Under BIOS iPXE is Debian's ipxe.lkrn; under UEFI (OVMF) it is QEMU's EFI NIC ROM, given the
chainloader as the DHCP boot file; the VSI test boots the disk image `bootfleet images
build-ipxe-disk` writes, under both firmwares, with no -kernel and no NIC ROM.

Needs qemu-system-x86_64, Debian's ipxe, ipxe-qemu, ovmf, busybox-static, mtools, syslinux,
qemu-utils, and apt to download the cloud kernel and Debian 13's iPXE (see docs/e2e.md).
Missing tools skip with the apt-get command to run; under CI=true they fail instead, so CI
never skips this silently.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from support import ADMIN, ROOT
from support.objectstore import S3Server
from support.server import RunningServer

from bootfleet.providers.vpc import qemu

from . import ipxe_debian13, local_disk
from .node_image import INSTALL, NodeImageUnavailableError, build, cache_dir

pytestmark = pytest.mark.e2e

S3_GUEST = "10.0.2.101"
PROFILE = {
    "name": "e2e",
    "kernel": "e2e/vmlinuz",
    "initrds": ["e2e/initrd.img"],
    "args": "console=ttyS0 panic=5 bootfleet.node={{ node.id }} bootfleet.config={{ config_url }} "
    "bootfleet.status={{ status_url }} ds=nocloud-net;s={{ cloud_init_url }}",  # NoCloud's form: `;` in a word
    "config_format": "cloud-init",
    "config_template": "#cloud-config\nhostname: {{ node.hostname }}\n",
}
STAGES = ["registered", "booting", "configuring", "installing", "rebooting", "ready"]
BOOT_TIMEOUT = 240  # seconds from QEMU start to poweroff; about 20 s here under TCG


def unavailable(message: str):
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the QEMU e2e: {message}")
    pytest.skip(message)


@pytest.fixture(scope="module")
def tools():
    try:
        return qemu.find_tools()
    except qemu.QemuUnavailableError as e:
        unavailable(str(e))


@pytest.fixture(scope="module")
def node_image(tools):
    try:
        return build()
    except NodeImageUnavailableError as e:
        unavailable(f"cannot build the node's kernel and initramfs: {e} (on Debian: {INSTALL})")


@pytest.fixture(scope="module")
def uefi(tools):
    try:
        qemu.check_uefi()
    except qemu.QemuUnavailableError as e:
        unavailable(str(e))


@pytest.fixture(scope="module")
def installed_disk():
    """The local disk an installed node boots: it prints a marker and resets (local_disk.py)."""
    try:
        return local_disk.build(cache_dir())
    except (OSError, subprocess.CalledProcessError) as e:
        unavailable(f"cannot build the local disk image: {e} (apt-get install -y mtools)")


@pytest.fixture(scope="module")
def ipxe_1_21(tools):
    try:
        return ipxe_debian13.ipxe_dir(cache_dir())
    except ipxe_debian13.IpxeUnavailableError as e:
        unavailable(f"cannot get Debian 13's iPXE: {e}")


def bootfleet_cli(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "bootfleet.cli", *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def api(server: RunningServer, method: str, path: str, **kwargs):
    resp = requests.request(method, server.url + path, headers=ADMIN, timeout=30, **kwargs)
    assert resp.status_code < 300, f"{method} {path}: {resp.status_code} {resp.text}"
    return resp.json() if resp.content else None


def create_deployment(server: RunningServer, name: str, macs: list[str]) -> list[dict]:
    api(server, "POST", "/config/api/v1/profiles", json=PROFILE)
    api(server, "POST", "/config/api/v1/deployments", json={"name": name, "profile": "e2e", "count": len(macs)})
    return [api(server, "POST", "/config/api/v1/nodes",
                json={"macs": [mac], "hostname": f"{name}-{i}", "deployment": name})
            for i, mac in enumerate(macs, 1)]


def boot_log(server: RunningServer, mac: str) -> list[str]:
    """The outcomes boot logged for this MAC ("install", "local-disk", ...), in order."""
    outcomes = []
    for line in server.output().splitlines():
        if line.startswith("{") and '"boot script"' in line:
            entry = json.loads(line)
            if mac in (entry.get("mac") or []):
                outcomes.append(entry["outcome"])
    return outcomes


def node_script_asked(log: str, node: dict, platform: str) -> bool:
    """The access log shows this node's iPXE asking for its script from that platform (efi, pcbios).
    iPXE 1.0 sends the MAC's colons as %3A, iPXE 1.21 as they are."""
    mac = "(?:{}|{})".format(re.escape(quote(node["macs"][0], safe="")), re.escape(node["macs"][0]))
    return re.search(rf'"GET /boot/ipxe\?mac={mac}&\S*&platform={platform} HTTP', log) is not None


def stage_events(server: RunningServer, node_id: str) -> list[dict]:
    events = api(server, "GET", f"/status/nodes/{node_id}/events")["events"]
    return [e for e in events if e["kind"] == "stage"]


def install(server: RunningServer, node: dict, log_dir: Path, forwards: dict[str, int],
            **machine) -> tuple[qemu.VM, float]:
    """Boot the node's VM and wait for it to report ready and power off; returns it and when it started.
    `machine`: qemu.start's firmware, boot and disks."""
    return finish_install(server, *start_vm(node, log_dir, forwards, **machine))


def start_vm(node: dict, log_dir: Path, forwards: dict[str, int], **machine) -> tuple[qemu.VM, float]:
    started = time.time()
    vm = qemu.start(node["hostname"], node["macs"][0], qemu.GUEST_BASE_URL, forwards, log_dir=log_dir,
                    timeout=BOOT_TIMEOUT, **machine)
    return vm, started


def finish_install(server: RunningServer, vm: qemu.VM, started: float) -> tuple[qemu.VM, float]:
    code = vm.wait(BOOT_TIMEOUT + 10)
    vm.stop()
    details = f"\n--- serial console ---\n{vm.log()[-4000:]}\n--- qemu ---\n{vm.errors()}\n" \
              f"--- server ---\n{server.output()[-4000:]}"
    assert not vm.timed_out, f"the VM did not power off within {BOOT_TIMEOUT} s{details}"
    assert code == 0, f"qemu exited with {code}{details}"
    assert "bootfleet-node: reported ready" in vm.log(), details
    return vm, started


def assert_installed(server: RunningServer, node: dict, deployment: str) -> None:
    events = stage_events(server, node["id"])
    assert [e["stage"] for e in events] == STAGES, events
    assert [e["source"] for e in events] == ["operator", "boot", "config", "node", "node", "node"], events
    # The node applied the config it fetched with its token: its hostname came from the rendered user-data.
    assert events[-1]["message"].startswith(f"{node['hostname']} ready on kernel "), events[-1]
    progress = api(server, "GET", f"/status/deployments/{deployment}")
    assert progress["percent"] == 100.0 and progress["done"] is True, progress


def boot_installed(server: RunningServer, node: dict, log_dir: Path, marker: str, **machine) -> str:
    """Boot an installed node again: boot answers the local-disk script and the machine boots
    the local disk, which prints `marker` and resets (the VM ends). Returns the serial console."""
    events_before = stage_events(server, node["id"])
    vm = qemu.start(node["hostname"], node["macs"][0], qemu.GUEST_BASE_URL, {qemu.GUEST_ADDRESS: server.port},
                    log_dir=log_dir, timeout=BOOT_TIMEOUT, **machine)
    try:
        code = vm.wait(180)
    finally:
        vm.stop()
    details = f"\n--- serial console ---\n{vm.log()[-3000:]}\n--- qemu ---\n{vm.errors()}\n" \
              f"--- server ---\n{server.output()[-3000:]}"
    assert code == 0 and marker in vm.log(), f"the local disk did not boot{details}"
    assert boot_log(server, node["macs"][0]) == ["install", "local-disk"], details
    assert stage_events(server, node["id"]) == events_before
    assert api(server, "GET", f"/status/nodes/{node['id']}")["stage"] == "ready"
    return vm.log()


def report_times(what: str, server: RunningServer, node: dict, started: float) -> None:
    """Seconds from QEMU start to each stage (docs/benchmarks.md, "A real node"); shown with -s."""
    times = []
    for event in stage_events(server, node["id"])[1:]:
        at = datetime.datetime.fromisoformat(event["created_at"]).timestamp()
        times.append(f"{event['stage']} {at - started:.1f}")
    print(f"\n[e2e] {what}: seconds from QEMU start: {', '.join(times)}")


def test_qemu_node_installs_from_local_folder_then_boots_local_disk(tools, node_image, installed_disk, clean_db,
                                                                    tmp_path):
    images = tmp_path / "images"
    server = RunningServer(env={"BOOTFLEET_IMAGES_DIR": str(images), "BOOTFLEET_LOG_LEVEL": "INFO",
                                "BOOTFLEET_ACCESS_LOG": "-"})
    try:
        env = {**server.env, "BOOTFLEET_IMAGES_DIR": str(images)}
        bootfleet_cli(env, "images", "upload", "--prefix", "e2e", str(node_image.kernel), str(node_image.initrd))
        assert "e2e/vmlinuz" in bootfleet_cli(env, "images", "list")
        (node,) = create_deployment(server, "e2e-local", ["52:54:00:e2:00:01"])

        vm, started = install(server, node, tmp_path / "vms", {qemu.GUEST_ADDRESS: server.port},
                              disks=[installed_disk])
        assert_installed(server, node, "e2e-local")
        # The `;` reached the kernel verbatim: the guest's /proc/cmdline has the NoCloud seed URL whole.
        seed = f"ds=nocloud-net;s=http://{qemu.GUEST_ADDRESS}/config/nodes/{node['id']}/t/"
        assert re.search(rf"cmdline: .* {re.escape(seed)}[A-Za-z0-9._-]+/\s", vm.log()), vm.log()[-3000:]
        report_times("local folder", server, node, started)
        log = server.output()
        # iPXE itself fetched kernel and initrd from /images/ (its user agent, not ours).
        for key in ("e2e/vmlinuz", "e2e/initrd.img"):
            assert re.search(rf'"GET /images/{key} HTTP/1\.[01]" 200 .*"iPXE/', log), f"{key} not fetched:\n{log}"
        assert boot_log(server, node["macs"][0]) == ["install"]
        image_fetches = log.count('"GET /images/')

        # Boot the same machine again: boot answers the local-disk script, not the installer, and
        # iPXE's sanboot hands over to the disk (drive 0x80), whose boot code prints its marker.
        boot_installed(server, node, tmp_path / "vms", local_disk.MARKER_BIOS, disks=[installed_disk])
        script = requests.get(f"{server.url}/boot/ipxe", params={"mac": node["macs"][0]},
                              headers={"Host": qemu.GUEST_ADDRESS}, timeout=10).text
        assert "sanboot --no-describe --drive 0x80" in script and "kernel " not in script
        assert server.output().count('"GET /images/') == image_fetches
    finally:
        server.stop()


def test_qemu_uefi_node_installs_then_firmware_boots_local_disk(tools, uefi, node_image, installed_disk, clean_db,
                                                                tmp_path):
    """OVMF, iPXE's EFI NIC ROM and the chainloader as the DHCP boot file; booted again, the
    local-disk script exits iPXE and the firmware boots the disk, next in its boot order."""
    images = tmp_path / "images"
    server = RunningServer(env={"BOOTFLEET_IMAGES_DIR": str(images), "BOOTFLEET_LOG_LEVEL": "INFO",
                                "BOOTFLEET_ACCESS_LOG": "-"})
    try:
        bootfleet_cli({**server.env, "BOOTFLEET_IMAGES_DIR": str(images)}, "images", "upload", "--prefix", "e2e",
                      str(node_image.kernel), str(node_image.initrd))
        (node,) = create_deployment(server, "e2e-uefi", ["52:54:00:e2:00:03"])
        vm, started = install(server, node, tmp_path / "vms", {qemu.GUEST_ADDRESS: server.port}, firmware="uefi",
                              disks=[installed_disk])
        assert_installed(server, node, "e2e-uefi")
        report_times("UEFI, EFI NIC ROM", server, node, started)
        log = server.output()
        # The firmware's iPXE fetched the chainloader named by DHCP, then the node script as EFI.
        assert re.search(r'"GET /boot/boot\.ipxe HTTP/1\.[01]" 200 .*"iPXE/', log), log[-3000:]
        assert node_script_asked(log, node, "efi"), [line for line in log.splitlines() if "/boot/" in line]
        # Under UEFI iPXE writes to the firmware's console, the serial port: one DHCP, by the firmware's
        # iPXE; the chainloader found the address and did not ask again (issue 15: no second DHCP).
        console = vm.log()
        assert console.count("Configuring (net0") == 1, console[-3000:]
        assert "bootfleet: configuring the network" not in console, console[-3000:]

        console = boot_installed(server, node, tmp_path / "vms", local_disk.MARKER_EFI, firmware="uefi",
                                 disks=[installed_disk])
        assert "bootfleet: leaving iPXE; the firmware boots the next device" in console
    finally:
        server.stop()


def test_vsi_disk_image_boots_to_ready_under_uefi_and_bios(tools, uefi, node_image, ipxe_1_21, clean_db, tmp_path):
    """The disk image `bootfleet images build-ipxe-disk` writes, booted as a VSI boots it:
    no -kernel, no NIC ROM, nothing from DHCP but an address; its own iPXE runs the chainloader."""
    images = tmp_path / "images"
    server = RunningServer(env={"BOOTFLEET_IMAGES_DIR": str(images), "BOOTFLEET_LOG_LEVEL": "INFO",
                                "BOOTFLEET_ACCESS_LOG": "-"})
    runs = []
    try:
        env = {**server.env, "BOOTFLEET_IMAGES_DIR": str(images)}
        bootfleet_cli(env, "images", "upload", "--prefix", "e2e", str(node_image.kernel), str(node_image.initrd))
        disk = tmp_path / "bootfleet-ipxe.qcow2"
        built = bootfleet_cli(env, "images", "build-ipxe-disk", "--url", qemu.GUEST_BASE_URL, "--out", str(disk),
                              "--ipxe-dir", str(ipxe_1_21))
        assert f"wrote {disk}" in built and disk.read_bytes()[:4] == b"QFI\xfb", built
        nodes = create_deployment(server, "e2e-vsi", ["52:54:00:e2:00:04", "52:54:00:e2:00:05"])
        # Both machines at once: one under UEFI (ipxe.efi + autoexec.ipxe), one under BIOS (SYSLINUX + ipxe.lkrn).
        for node, firmware in zip(nodes, ("uefi", "bios")):
            runs.append(start_vm(node, tmp_path / "vms", {qemu.GUEST_ADDRESS: server.port}, firmware=firmware,
                                 boot="disk", disks=[disk]))
        for node, (vm, started), firmware in zip(nodes, runs, ("UEFI", "BIOS")):
            finish_install(server, vm, started)
            report_times(f"VSI disk image, {firmware}", server, node, started)
        log = server.output()
        for node, platform in zip(nodes, ("efi", "pcbios")):
            assert_installed(server, node, "e2e-vsi")
            assert node_script_asked(log, node, platform), [line for line in log.splitlines() if "/boot/" in line]
        # The chainloader came from the disk: nobody asked boot for it.
        assert "GET /boot/boot.ipxe" not in log
        # The UEFI machine's console: Debian 13's iPXE ran the disk's script, which configured the network once.
        console = runs[0][0].log()
        assert "iPXE 1.21.1" in console and "file:/autoexec.ipxe... ok" in console, console[-3000:]
        assert console.count("bootfleet: configuring the network") == 1, console[-3000:]
    finally:
        for vm, _ in runs:  # a failed install leaves the other VM running
            vm.stop()
        server.stop()


def test_qemu_node_installs_from_s3_presigned_urls(tools, node_image, clean_db, tmp_path):
    s3 = S3Server()
    server = None
    try:
        bucket = s3.create_bucket("bootfleet-e2e-images")
        # bootfleet talks to moto on 127.0.0.1; machines reach it as http://10.0.2.101.
        s3_env = s3.env(bucket, public_endpoint=f"http://{S3_GUEST}")
        server = RunningServer(env={**s3_env, "BOOTFLEET_LOG_LEVEL": "INFO", "BOOTFLEET_ACCESS_LOG": "-"})
        bootfleet_cli(server.env, "images", "upload", "--prefix", "e2e", str(node_image.kernel), str(node_image.initrd))
        listed = bootfleet_cli(server.env, "--json", "images", "list", "--prefix", "e2e/")
        assert sorted(i["key"] for i in json.loads(listed)) == ["e2e/initrd.img", "e2e/vmlinuz"]
        (node,) = create_deployment(server, "e2e-s3", ["52:54:00:e2:00:02"])

        vm, started = install(server, node, tmp_path / "vms",
                              {qemu.GUEST_ADDRESS: server.port, S3_GUEST: s3.port})
        assert_installed(server, node, "e2e-s3")
        report_times("S3 (moto) presigned URLs", server, node, started)

        # iPXE fetched kernel and initrd straight from the S3 endpoint, by presigned SigV4 URL.
        gets = [r for r in s3.requests if r.method == "GET" and r.status == 200]
        for key in ("e2e/vmlinuz", "e2e/initrd.img"):
            fetched = [r.target for r in gets if r.target.startswith(f"/{bucket}/{key}?")]
            assert fetched, f"{key} was not fetched from S3: {[r.target for r in s3.requests]}"
            assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in fetched[0] and "X-Amz-Signature=" in fetched[0]
        assert '"GET /images/' not in server.output(), "no image may pass through bootfleet"
    finally:
        if server:
            server.stop()
        s3.stop()
