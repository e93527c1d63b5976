"""Build the bootfleet agent (issue 22): Debian's kernel and a busybox initramfs whose /init is
the agent (script.py), with the drivers for virtio and common server NICs and storage.

`apt-get download`s the kernel package (linux-image-amd64's, the generic kernel with every
driver; linux-image-cloud-amd64 is smaller, virtio and cloud NICs only), busybox-static and the
packages of TOOLS (with the shared libraries they need, found from their ELF headers, and the
loader), extracts them with dpkg-deb, and writes a gzipped newc cpio. Reproducible: files in a fixed
order, every timestamp 0, gzip without a name or time; the same packages give the same bytes.
Used by `bootfleet images build-agent` and `make run`; docs/images.md.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bootfleet.agent.script import AGENT, UDHCPC_SCRIPT
from bootfleet.errors import BootfleetError

DEFAULT_KERNEL = "linux-image-amd64"
INSTALL = "apt-get install -y busybox-static (on Debian; the packages are downloaded with apt-get download)"
# Loaded in this order (each after the modules it depends on); what a kernel lacks is left out.
MODULES = (
    # virtio
    "virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi",
    # NICs of common servers
    "e1000", "e1000e", "igb", "igc", "ixgbe", "i40e", "ice", "bnxt_en", "tg3", "mlx4_en", "mlx5_core", "ena",
    "vmxnet3", "r8169", "qede", "be2net",
    # storage
    "ata_piix", "ata_generic", "ahci", "sd_mod", "nvme", "megaraid_sas", "mpt3sas", "hpsa", "smartpqi", "aacraid",
    "vmw_pvscsi", "mmc_block", "sdhci_pci",
    # filesystems the agent mounts to hand over the config; EFI variables (secure boot)
    "ext4", "xfs", "btrfs", "efivarfs",
)

# Dynamically linked tools the agent runs instead of busybox's, from these packages, put in
# /usr/bin (first on the agent's PATH) with the libraries they need and the loader:
# - coreutils' tee and sha256sum: measured in a QEMU TCG guest (64 MiB), busybox's tee into a
#   FIFO took 4 to 7 times as long as coreutils' and its sha256sum about twice as long
#   (docs/benchmarks.md, "Image write");
# - zstd: busybox-static (Debian 12's 1.35) has no zstd decompressor.
TOOLS = {"coreutils": ("usr/bin/tee", "usr/bin/sha256sum"), "zstd": ("usr/bin/zstd",)}
# The packages that hold the libraries those need (a library missing here fails the build).
LIBRARY_PACKAGES = ("libc6", "zlib1g", "liblzma5", "liblz4-1")
LIBRARY_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib")


class AgentBuildError(BootfleetError):
    status = 500


@dataclass(frozen=True)
class Agent:
    kernel: Path
    initrd: Path
    version: str  # the kernel package, e.g. linux-image-6.1.0-57-amd64
    modules: tuple[str, ...]  # the modules in the initramfs, in load order


def cache_dir() -> Path:
    """Where packages and builds are kept unless --cache names another folder."""
    return Path.home() / ".cache" / "bootfleet" / "agent"


def run(command: list[str], cwd: Path | None = None) -> str:
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900)
    except FileNotFoundError:
        raise AgentBuildError(f"{command[0]} not found: the agent is built on Debian ({INSTALL})") from None
    if result.returncode != 0:
        raise AgentBuildError(f"{' '.join(command)} failed: {result.stderr.strip()[-500:]}")
    return result.stdout


def kernel_package(meta: str) -> str:
    """The versioned package a meta package (linux-image-amd64) depends on now; a versioned name as it is."""
    if re.fullmatch(r"linux-image-\d+\.\d+\S*", meta):
        return meta
    for line in run(["apt-cache", "depends", meta]).splitlines():
        name = line.strip().removeprefix("Depends:").strip()
        if line.strip().startswith("Depends:") and name.startswith("linux-image-"):
            return name
    raise AgentBuildError(f"apt knows no {meta}; run: apt-get update")


def download(package: str, into: Path) -> Path:
    found = sorted(into.glob(f"{package}_*.deb"))
    if not found:
        run(["apt-get", "download", package], cwd=into)
        found = sorted(into.glob(f"{package}_*.deb"))
    if not found:
        raise AgentBuildError(f"apt-get download {package} left no .deb in {into}")
    return found[-1]


def module_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".zst"):
        try:
            return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True, timeout=60).stdout
        except (FileNotFoundError, subprocess.CalledProcessError) as e:
            raise AgentBuildError(f"zstd -dc {path.name}: {e}; apt-get install -y zstd") from None
    return data


def _name(module: str) -> str:
    return module.replace("-", "_")


def _depends(data: bytes) -> list[str]:
    """The modules a .ko needs, from its .modinfo `depends=` entry."""
    start = data.find(b"\0depends=")
    if start < 0:
        return []
    start += len(b"\0depends=")
    return [_name(d) for d in data[start:data.index(b"\0", start)].decode().split(",") if d]


def load_order(found: dict[str, Path], wanted: tuple[str, ...]) -> list[tuple[str, bytes]]:
    """The wanted modules the kernel has, with their dependencies first: [(name, bytes)]."""
    order: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def add(name: str) -> None:
        if name in seen or name not in found:
            return
        seen.add(name)
        data = module_bytes(found[name])
        for dep in _depends(data):
            add(dep)
        order.append((name, data))

    for name in wanted:
        add(_name(name))
    return order


def elf_needs(data: bytes) -> tuple[str | None, list[str]]:
    """An ELF64 little-endian file's loader (PT_INTERP) and the libraries it needs (DT_NEEDED)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise AgentBuildError("not a 64-bit little-endian ELF file")
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    interp, dynamic, loads = None, None, []
    for i in range(phnum):
        kind, _, offset, vaddr, _, filesz, _, _ = struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize)
        if kind == 3:  # PT_INTERP
            interp = data[offset:offset + filesz].rstrip(b"\0").decode()
        elif kind == 2:  # PT_DYNAMIC
            dynamic = (offset, filesz)
        elif kind == 1:  # PT_LOAD
            loads.append((vaddr, offset, filesz))
    if not dynamic:
        return interp, []
    entries = [struct.unpack_from("<qQ", data, dynamic[0] + i) for i in range(0, dynamic[1], 16)]
    strtab = next(value for tag, value in entries if tag == 5)  # DT_STRTAB, an address
    base = next(offset + strtab - vaddr for vaddr, offset, size in loads if vaddr <= strtab < vaddr + size)
    return interp, [data[base + value:data.index(b"\0", base + value)].decode() for tag, value in entries if tag == 1]


def tool_files(root: Path, tools: tuple[str, ...]) -> dict[str, bytes]:
    """The tools (paths under `root`, an extracted package tree) with every library they need,
    transitively, and the loader: {path in the initramfs: bytes}. Symlinks are resolved inside
    `root`; libraries go to lib/x86_64-linux-gnu/, which the loader searches by default."""
    def resolve(path: Path) -> Path:
        for _ in range(10):
            if not path.is_symlink():
                return path
            target = Path(path.readlink())
            path = root / str(target).lstrip("/") if target.is_absolute() else path.parent / target
        raise AgentBuildError(f"symlink loop at {path}")

    files: dict[str, bytes] = {}
    wanted = [(tool, root / tool) for tool in tools]
    while wanted:
        name, path = wanted.pop(0)
        if name in files:
            continue
        path = resolve(path)
        if not path.is_file():
            raise AgentBuildError(f"{name} is not in the downloaded packages (TOOLS, LIBRARY_PACKAGES)")
        files[name] = data = path.read_bytes()
        interp, needed = elf_needs(data)
        if interp:
            wanted.append((interp.lstrip("/"), root / interp.lstrip("/")))
        for library in needed:
            found = next((root / d / library for d in LIBRARY_DIRS if (root / d / library).exists()
                          or (root / d / library).is_symlink()), None)
            if found is None:
                raise AgentBuildError(f"{name} needs {library}, in none of {', '.join(LIBRARY_PACKAGES)}")
            wanted.append((f"lib/x86_64-linux-gnu/{library}", found))
    return dict(sorted(files.items()))


class Cpio:
    """A newc ("070701") archive, every mtime 0 (the same input gives the same bytes)."""

    def __init__(self):
        self.out = io.BytesIO()
        self.ino = 0

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        self.ino += 1
        encoded = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        self.out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        self.out.write(b"\0" * (-(110 + len(encoded)) % 4))
        self.out.write(data)
        self.out.write(b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, 0o100000 | mode, data)

    def char_device(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.out.getvalue()


def initramfs(busybox: bytes, modules: list[tuple[str, bytes]], init: str = AGENT,
              tools: dict[str, bytes] | None = None) -> bytes:
    """The agent's initramfs (gzip, no name or time in its header); `tools` from tool_files()."""
    cpio = Cpio()
    tools = tools or {}
    directories = {"bin", "dev", "etc", "lib", "lib/modules", "mnt", "proc", "run", "sys", "tmp"}
    for path in tools:
        parts = path.split("/")[:-1]
        directories.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    for directory in sorted(directories):
        cpio.directory(directory)
    cpio.char_device("dev/console", 5, 1)
    cpio.file("init", init.encode(), 0o755)
    cpio.file("bin/busybox", busybox, 0o755)
    for path, data in tools.items():
        cpio.file(path, data, 0o755)
    cpio.file("etc/udhcpc.script", UDHCPC_SCRIPT.encode(), 0o755)
    cpio.file("etc/modules-order", "".join(f"{name}\n" for name, _ in modules).encode())
    for name, data in modules:
        cpio.file(f"lib/modules/{name}.ko", data)
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0, filename="") as gz:
        gz.write(cpio.finish())
    return out.getvalue()


def build(kernel: str = DEFAULT_KERNEL, cache: Path | None = None, init: str = AGENT,
          progress: Callable[[str], None] = lambda line: None) -> Agent:
    """The agent's kernel and initramfs, built into the cache (once per kernel and script)."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    package = kernel_package(kernel)
    key = hashlib.sha256((init + UDHCPC_SCRIPT + "\n".join(MODULES) + repr(TOOLS) + repr(LIBRARY_PACKAGES)).encode())
    key = key.hexdigest()[:12]
    target = cache / f"agent-{package}-{key}"
    if (target / "vmlinuz").exists() and (target / "initrd.img").exists():
        names = tuple((target / "modules").read_text().split())
        return Agent(target / "vmlinuz", target / "initrd.img", package, names)
    debs = cache / "debs"
    debs.mkdir(exist_ok=True)
    progress(f"downloading {package}, busybox-static, {', '.join((*TOOLS, *LIBRARY_PACKAGES))} (apt-get download)")
    kernel_deb, busybox_deb = download(package, debs), download("busybox-static", debs)
    tool_debs = [download(name, debs) for name in (*TOOLS, *LIBRARY_PACKAGES)]
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        root = Path(tmp)
        run(["dpkg-deb", "-x", str(kernel_deb), str(root / "kernel")])
        run(["dpkg-deb", "-x", str(busybox_deb), str(root / "busybox")])
        for deb in tool_debs:
            run(["dpkg-deb", "-x", str(deb), str(root / "tools")])
        tools = tool_files(root / "tools", tuple(path for paths in TOOLS.values() for path in paths))
        progress(f"tools: {' '.join(tools)}")
        vmlinuz = next((root / "kernel" / "boot").glob("vmlinuz-*"))
        found = {}
        for path in sorted((root / "kernel").glob("**/lib/modules/*/kernel/**/*.ko*")):
            found[_name(path.name.split(".ko")[0])] = path
        modules = load_order(found, MODULES)
        progress(f"{len(modules)} modules: {' '.join(name for name, _ in modules)}")
        staging = cache / f".{target.name}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        shutil.copyfile(vmlinuz, staging / "vmlinuz")
        busybox = (root / "busybox" / "bin" / "busybox").read_bytes()
        (staging / "initrd.img").write_bytes(initramfs(busybox, modules, init, tools))
        (staging / "modules").write_text("\n".join(name for name, _ in modules) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return build(kernel, cache, init)
