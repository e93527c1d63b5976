"""The agent's initramfs (issue 22): modules after what they depend on, the same bytes every time."""

import gzip
from pathlib import Path

import pytest

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


def test_elf_needs_reads_the_loader_and_the_libraries_of_a_real_binary():
    interp, needed = build.elf_needs(Path("/usr/bin/tee").read_bytes())
    assert interp == "/lib64/ld-linux-x86-64.so.2" and needed == ["libc.so.6"]


def test_tool_files_brings_the_libraries_and_the_loader_through_symlinks(tmp_path):
    # A package tree as dpkg-deb -x leaves it: the loader's /lib64 name is an absolute symlink.
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "lib/x86_64-linux-gnu").mkdir(parents=True)
    (tmp_path / "lib64").mkdir()
    (tmp_path / "usr/bin/tee").write_bytes(Path("/usr/bin/tee").read_bytes())
    libc = Path("/lib/x86_64-linux-gnu/libc.so.6").resolve().read_bytes()
    loader = Path("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2").resolve().read_bytes()
    (tmp_path / "lib/x86_64-linux-gnu/libc-real.so").write_bytes(libc)
    (tmp_path / "lib/x86_64-linux-gnu/libc.so.6").symlink_to("libc-real.so")
    (tmp_path / "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2").write_bytes(loader)
    (tmp_path / "lib64/ld-linux-x86-64.so.2").symlink_to("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    files = build.tool_files(tmp_path, ("usr/bin/tee",))
    assert list(files) == ["lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "lib/x86_64-linux-gnu/libc.so.6",
                           "lib64/ld-linux-x86-64.so.2", "usr/bin/tee"]
    assert files["lib/x86_64-linux-gnu/libc.so.6"] == libc and files["lib64/ld-linux-x86-64.so.2"] == loader
    cpio = gzip.decompress(build.initramfs(b"busybox-bytes", [], tools=files))
    assert b"usr/bin/tee\0" in cpio and b"lib64\0" in cpio


def test_tool_files_names_a_missing_library(tmp_path):
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/tee").write_bytes(Path("/usr/bin/tee").read_bytes())
    with pytest.raises(build.AgentBuildError, match=r"usr/bin/tee needs libc\.so\.6, in none of libc6"):
        build.tool_files(tmp_path, ("usr/bin/tee",))
