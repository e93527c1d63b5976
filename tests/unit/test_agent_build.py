"""The agent's initramfs (issue 22): modules after what they depend on, the same bytes every time."""

import gzip
from pathlib import Path

from bootfleet.agent import build
from bootfleet.agent.script import AGENT


def _ko(tmp_path: Path, name: str, depends: str) -> Path:
    path = tmp_path / f"{name}.ko"
    path.write_bytes(b"\x7fELF...\0license=GPL\0depends=" + depends.encode() + b"\0name=" + name.encode() + b"\0")
    return path


def test_modules_come_after_their_dependencies_and_missing_ones_are_left_out(tmp_path):
    found = {"virtio_net": _ko(tmp_path, "virtio_net", "net_failover,virtio"),
             "net_failover": _ko(tmp_path, "net_failover", "failover"),
             "failover": _ko(tmp_path, "failover", ""),
             "virtio": _ko(tmp_path, "virtio", ""),
             "nvme_core": _ko(tmp_path, "nvme-core", ""),
             "nvme": _ko(tmp_path, "nvme", "nvme-core")}
    order = [name for name, _ in build.load_order(found, ("virtio_net", "igb", "nvme", "virtio"))]
    assert order == ["failover", "net_failover", "virtio", "virtio_net", "nvme_core", "nvme"]


def test_the_initramfs_is_reproducible_and_holds_the_agent():
    modules = [("virtio", b"one"), ("virtio_net", b"two")]
    first = build.initramfs(b"busybox-bytes", modules)
    assert first == build.initramfs(b"busybox-bytes", modules)
    cpio = gzip.decompress(first)
    assert AGENT.encode() in cpio and b"virtio\nvirtio_net\n" in cpio and b"TRAILER!!!" in cpio
    assert first[4:8] == b"\0\0\0\0"  # gzip mtime 0
