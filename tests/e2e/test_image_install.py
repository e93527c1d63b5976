"""Issue 22 end to end: the bootfleet agent in QEMU (BIOS and UEFI) against `bootfleet serve`.

A node with an empty disk boots the agent (built by `bootfleet images build-agent`), reports its
inventory, passes its profile's requirements, streams a test OS image (installable_image.py; zstd
under BIOS, gz under UEFI and in the failure cases) to its disk while checking its SHA-256, hands
over the NoCloud seed, reboots; boot answers it the local disk, the installed OS reads the seed,
fetches its user-data and reports `ready` itself. A node with less memory than the profile
needs is held with the reason, its disk untouched. Failures (checksum mismatch, missing disk, a
cut download, a disk too small) leave the node `failed` with the reason and nothing bootable on
the disk.

Needs what test_ipxe_qemu.py needs, plus e2fsprogs and zstd; the kernel is the cloud one (the
e2e cache's).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests
from support import ADMIN, ROOT
from support.server import RunningServer

from bootfleet.providers.vpc import qemu

from . import installable_image, ipxe_debian13
from .node_image import cache_dir
from .test_ipxe_qemu import tools, unavailable  # noqa: F401 (a fixture)

pytestmark = pytest.mark.e2e

TIMEOUT = 300
AGENT_ARGS = "console=ttyS0 panic=5 bootfleet.status={{ status_url }} bootfleet.hold_wait=2 bootfleet.progress_every=1"
USER_DATA = "#cloud-config\nhostname: {{ node.hostname }}\nbootfleet_status: {{ status_url }}\n"


@pytest.fixture(scope="module")
def os_image(tools):
    try:
        raw = installable_image.build(cache_dir(), ipxe_debian13.ipxe_dir(cache_dir()))
    except (OSError, subprocess.CalledProcessError, ipxe_debian13.IpxeUnavailableError) as e:
        unavailable(f"cannot build the test OS image: {e} (apt-get install -y mtools syslinux e2fsprogs)")
    return raw, installable_image.gz(raw)


@pytest.fixture(scope="module")
def zst_image(os_image):
    try:
        return installable_image.zst(os_image[0])
    except (OSError, subprocess.CalledProcessError) as e:
        unavailable(f"cannot zstd-compress the test OS image: {e} (apt-get install -y zstd)")


@pytest.fixture(scope="module")
def server(tools, database, tmp_path_factory):
    images = tmp_path_factory.mktemp("images")
    srv = RunningServer(env={"BOOTFLEET_IMAGES_DIR": str(images), "BOOTFLEET_LOG_LEVEL": "INFO",
                             "BOOTFLEET_ACCESS_LOG": "-", "BOOTFLEET_CLEANUP_EVERY": "0"})
    env = {**srv.env, "BOOTFLEET_IMAGES_DIR": str(images)}
    srv.images, srv.cli_env = images, env
    out = cli(env, "images", "build-agent", "--kernel-package", "linux-image-cloud-amd64", "--cache", str(cache_dir()))
    assert "uploaded bootfleet-agent/vmlinuz, bootfleet-agent/initrd.img" in out, out
    yield srv
    srv.stop()


def cli(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "bootfleet.cli", *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    return result.stdout


def api(server, method: str, path: str, **kwargs):
    resp = requests.request(method, server.url + path, headers=ADMIN, timeout=30, **kwargs)
    assert resp.status_code < 300, f"{method} {path}: {resp.status_code} {resp.text}"
    return resp.json() if resp.content else None


def image_profile(server, name: str, key: str, sha: str, size: int, requirements: dict | None = None, **disk):
    api(server, "POST", "/config/api/v1/profiles", json={
        "name": name, "kernel": "bootfleet-agent/vmlinuz", "initrds": ["bootfleet-agent/initrd.img"],
        "args": AGENT_ARGS, "config_format": "cloud-init", "config_template": USER_DATA,
        "requirements": requirements or {}, "image": {"key": key, "sha256": sha, "size_bytes": size,
                                                      "disk": disk or {"rule": "largest"}}})


def empty_disk(path: Path, mib: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(mib * 2**20)
    return path


def run_vm(server, node: dict, log_dir: Path, disks: list[Path], firmware: str = "bios", memory_mb: int = 384,
           until: str | None = None) -> qemu.VM:
    """Boot the node's machine (writes to its disks stay); wait until it ends, or `until` is on its console."""
    vm = qemu.start(node["hostname"], node["macs"][0], qemu.GUEST_BASE_URL, {qemu.GUEST_ADDRESS: server.port},
                    log_dir=log_dir, timeout=TIMEOUT, firmware=firmware, disks=disks, memory_mb=memory_mb,
                    snapshot=False)
    try:
        if until:
            assert vm.wait_for_log(until, TIMEOUT), details(server, vm)
        else:
            vm.wait(TIMEOUT + 10)
            assert not vm.timed_out, f"the VM did not end within {TIMEOUT} s{details(server, vm)}"
    finally:
        vm.stop()
    return vm


def details(server, vm) -> str:
    return f"\n--- serial console ---\n{vm.log()[-5000:]}\n--- server ---\n{server.output()[-3000:]}"


def node(server, hostname: str, mac: str, profile: str) -> dict:
    return api(server, "POST", "/config/api/v1/nodes", json={"macs": [mac], "hostname": hostname, "profile": profile})


def stages(server, node_id: str) -> list[str]:
    return [e["stage"] for e in api(server, "GET", f"/status/nodes/{node_id}/events")["events"] if e["kind"] == "stage"]


def upload(server, path: Path, key: str) -> None:
    cli(server.cli_env, "images", "upload", "--key", key, str(path))


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_agent_installs_the_image_and_the_installed_os_reports_ready(server, os_image, zst_image, firmware, clean_db,
                                                                     tmp_path):
    raw, packed = os_image
    if firmware == "bios":  # zstd here (the agent's zstd from Debian's package), gz under UEFI
        packed = zst_image
    key = f"os/test{''.join(packed.suffixes)}"
    upload(server, packed, key)
    image_profile(server, "os", key, installable_image.sha256(packed), raw.stat().st_size,
                  {"min_memory_mib": 200, "min_disks": 1, "min_disk_bytes": raw.stat().st_size})
    mac = "52:54:00:e3:00:01" if firmware == "bios" else "52:54:00:e3:00:02"
    n = node(server, f"inst-{firmware}", mac, "os")
    disk = empty_disk(tmp_path / "disk.raw", 96)

    vm = run_vm(server, n, tmp_path / "vms", [disk], firmware)
    log = vm.log()
    assert "bootfleet-agent: reported rebooting" in log, details(server, vm)
    assert f"bytes ({'zstd' if firmware == 'bios' else 'gz'}) to the disk" in log, details(server, vm)
    got = api(server, "GET", f"/config/api/v1/nodes/{n['id']}")
    assert got["stage"] == "rebooting", details(server, vm)
    inv = got["inventory"]
    assert inv["firmware"]["mode"] == firmware and inv["cpus"] == 1 and inv["system"]["vendor"] == "QEMU"
    assert [d["size_bytes"] for d in inv["disks"]] == [96 * 2**20] and inv["disks"][0]["by_path"].startswith("pci-")
    assert inv["nics"][0]["mac"] == mac and inv["nics"][0]["driver"] == "virtio_net"
    assert got["labels"]["hw.firmware"] == firmware
    assert got["install_progress"]["bytes"] == raw.stat().st_size and got["install_progress"]["percent"] == 100.0
    # The disk holds the image, byte for byte (the seed drop-in went into its ext4 root).
    with open(disk, "rb") as f:
        assert f.read(2**20) == raw.read_bytes()[:2**20]

    vm = run_vm(server, n, tmp_path / "vms", [disk], firmware)
    assert "bootfleet-test-os: reported ready" in vm.log(), details(server, vm)
    assert stages(server, n["id"]) == ["registered", "booting", "installing", "rebooting", "ready"]
    assert api(server, "GET", f"/config/api/v1/nodes/{n['id']}")["stage"] == "ready"
    events = api(server, "GET", f"/status/nodes/{n['id']}/events")["events"]
    assert events[-1]["message"] == f"inst-{firmware} ready: the installed OS, from its local disk"


def test_a_node_below_the_memory_minimum_is_held_and_its_disk_untouched(server, os_image, clean_db, tmp_path):
    raw, packed = os_image
    upload(server, packed, "os/test.img.gz")
    image_profile(server, "big", "os/test.img.gz", installable_image.sha256(packed), raw.stat().st_size,
                  {"min_memory_mib": 2048})
    n = node(server, "small", "52:54:00:e3:00:03", "big")
    disk = empty_disk(tmp_path / "disk.raw", 96)
    vm = run_vm(server, n, tmp_path / "vms", [disk], until="HELD: the inventory fails")
    got = api(server, "GET", f"/config/api/v1/nodes/{n['id']}")
    assert got["stage"] == "held", details(server, vm)
    assert len(got["requirements"]["failures"]) == 1
    assert got["requirements"]["failures"][0].startswith("memory: ")
    assert got["requirements"]["failures"][0].endswith("at least 2.0 GiB required")
    with open(disk, "rb") as f:
        assert not f.read().strip(b"\0"), "a held node's disk must stay untouched"


def _fail_case(server, tmp_path, name: str, mac: str, key: str, sha: str, size: int, disks: list[Path],
               **disk) -> tuple[dict, str]:
    image_profile(server, name, key, sha, size, **disk)
    n = node(server, name, mac, name)
    vm = run_vm(server, n, tmp_path / "vms", disks)
    got = api(server, "GET", f"/config/api/v1/nodes/{n['id']}")
    assert got["stage"] == "failed", details(server, vm)
    events = api(server, "GET", f"/status/nodes/{n['id']}/events")["events"]
    return got, events[-1]["message"]


def _not_bootable(disk: Path) -> None:
    with open(disk, "rb") as f:
        assert not f.read(2**20).strip(b"\0"), "the first MiB (boot code, partition table) must be wiped"


def test_checksum_mismatch_fails_and_wipes(server, os_image, clean_db, tmp_path):
    raw, packed = os_image
    upload(server, packed, "os/test.img.gz")
    disk = empty_disk(tmp_path / "disk.raw", 96)
    _, message = _fail_case(server, tmp_path, "badsum", "52:54:00:e3:00:04", "os/test.img.gz", "0" * 64,
                            raw.stat().st_size, [disk])
    assert message.startswith("checksum mismatch: the image has sha256 ") and message.endswith("its profile says " + "0" * 64), message
    _not_bootable(disk)
    # The operator fixes the profile and reinstalls: the install starts clean and succeeds.
    api(server, "PATCH", "/config/api/v1/profiles/badsum", json={"image": {
        "key": "os/test.img.gz", "sha256": installable_image.sha256(packed), "size_bytes": raw.stat().st_size}})
    n = api(server, "GET", "/config/api/v1/nodes/badsum")
    api(server, "POST", f"/config/api/v1/nodes/{n['id']}/reinstall")
    vm = run_vm(server, n, tmp_path / "vms", [disk])
    assert api(server, "GET", f"/config/api/v1/nodes/{n['id']}")["stage"] == "rebooting", details(server, vm)
    with open(disk, "rb") as f:
        assert f.read(2**20) == raw.read_bytes()[:2**20]


def test_a_cut_download_fails_and_wipes(server, os_image, clean_db, tmp_path):
    raw, packed = os_image
    cut = tmp_path / "cut.img.gz"
    cut.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])  # the stream ends halfway
    upload(server, cut, "os/cut.img.gz")
    disk = empty_disk(tmp_path / "disk.raw", 96)
    _, message = _fail_case(server, tmp_path, "cut", "52:54:00:e3:00:05", "os/cut.img.gz",
                            installable_image.sha256(packed), raw.stat().st_size, [disk])
    assert "cut" in message or "download failed" in message, message
    _not_bootable(disk)


def test_a_disk_smaller_than_the_image_fails_untouched(server, os_image, clean_db, tmp_path):
    raw, packed = os_image
    upload(server, packed, "os/test.img.gz")
    disk = empty_disk(tmp_path / "disk.raw", 32)
    _, message = _fail_case(server, tmp_path, "small", "52:54:00:e3:00:06", "os/test.img.gz",
                            installable_image.sha256(packed), raw.stat().st_size, [disk])
    assert message == f"disk sda ({32 * 2**20} bytes) is smaller than the image ({raw.stat().st_size} bytes)", message


def test_a_missing_disk_fails(server, os_image, clean_db, tmp_path):
    raw, packed = os_image
    upload(server, packed, "os/test.img.gz")
    disk = empty_disk(tmp_path / "disk.raw", 96)
    _, message = _fail_case(server, tmp_path, "noserial", "52:54:00:e3:00:07", "os/test.img.gz",
                            installable_image.sha256(packed), raw.stat().st_size, [disk],
                            rule="serial", serial="NOPE-1")
    assert message.startswith("no disk with serial NOPE-1 (disks: sda"), message
