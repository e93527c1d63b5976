"""A small disk image whose iPXE runs the chainloader: what a VPC virtual server boots.

A VSI cannot run iPXE user data the way a bare metal server does, so its custom image
carries the chainloader. The image is Debian's iPXE builds with the script beside them,
laid out the way iPXE's own `util/genfsimg` lays out its disk images:

    MBR (SYSLINUX mbr.bin), one active partition of type EF (EFI system partition), FAT:
      /EFI/BOOT/BOOTX64.EFI   ipxe.efi        UEFI: runs /autoexec.ipxe from its own filesystem
      /autoexec.ipxe          the chainloader for the URL
      /ipxe.lkrn              BIOS: SYSLINUX loads it with the script as its initrd
      /syslinux.cfg, ldlinux.sys, ldlinux.c32

UEFI firmware boots the removable-media path \\EFI\\BOOT\\BOOTX64.EFI; iPXE 1.21.1 and later
run `autoexec.ipxe` from the filesystem they were loaded from. BIOS firmware runs the MBR,
which starts SYSLINUX, which boots `ipxe.lkrn` with the script as its initrd (every iPXE
.lkrn runs a script given that way). Nothing is compiled and nothing is fetched: the
binaries come from the `ipxe` package, the tools from mtools, syslinux and qemu-utils.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from bootfleet.boot import ipxe
from bootfleet.errors import BootfleetError

IPXE_DIR = "/usr/lib/ipxe"
INSTALL = "apt-get install -y ipxe mtools syslinux syslinux-common qemu-utils"
TOOLS = {"mformat": "mtools", "mmd": "mtools", "mcopy": "mtools", "syslinux": "syslinux", "qemu-img": "qemu-utils"}
MBR_PATHS = ("/usr/lib/syslinux/mbr/mbr.bin", "/usr/lib/SYSLINUX/mbr.bin", "/usr/share/syslinux/mbr.bin")
SECTOR = 512
PART_START = 2048  # sectors: the partition starts at 1 MiB
FAT_SECTORS = 32768  # a 16 MiB FAT partition (64 heads x 32 sectors x 16 cylinders)
SYSLINUX_CFG = "PROMPT 0\nTIMEOUT 0\nDEFAULT ipxe\nLABEL ipxe\n  KERNEL ipxe.lkrn\n  INITRD autoexec.ipxe\n"
# Characters that would end or change an iPXE command line (or a URL) in the script.
UNSAFE = re.compile(r"[\s\"'$;&|<>`\\{}]")


class DiskImageError(BootfleetError):
    """The disk image could not be built; the message says what to fix."""

    status = 400


def check_url(url: str) -> str:
    """An http(s) base URL without query or fragment, safe to put in an iPXE script."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DiskImageError(f"--url {url!r}: give bootfleet's base URL, e.g. https://boot.example.com")
    if parts.query or parts.fragment or UNSAFE.search(url):
        raise DiskImageError(f"--url {url!r}: no query, fragment, spaces, quotes or any of $;&|<>`\\{{}}")
    return url.rstrip("/")


def find_ipxe(ipxe_dir: str | Path) -> tuple[Path, Path]:
    """ipxe.efi and ipxe.lkrn from an `ipxe` package (or a folder holding both)."""
    folder = Path(ipxe_dir)
    efi, lkrn = folder / "ipxe.efi", folder / "ipxe.lkrn"
    for path in (efi, lkrn):
        if not path.is_file():
            raise DiskImageError(f"{path} not found; install Debian's iPXE ({INSTALL}) or give --ipxe-dir")
    # iPXE learnt to run /autoexec.ipxe beside its EFI build in 1.21.1 (January 2021);
    # the string is in every build that can, and in none before.
    if b"autoexec.ipxe" not in efi.read_bytes():
        raise DiskImageError(f"{efi} is iPXE older than 1.21.1 (Debian 12 ships 1.0.0+git-20190125), which cannot "
                             "run a script beside it under UEFI; use the ipxe package of Debian 13 or Ubuntu 22.04 "
                             "and later (docs/vpc.md says how), and give its folder with --ipxe-dir")
    return efi, lkrn


def find_tools() -> dict[str, str]:
    found = {name: shutil.which(name) for name in TOOLS}
    mbr = next((p for p in MBR_PATHS if os.path.isfile(p)), None)
    missing = {TOOLS[name] for name, path in found.items() if not path} | ({"syslinux-common"} if not mbr else set())
    missing = sorted(missing)
    if missing:
        raise DiskImageError(f"missing {', '.join(missing)}; install with: {INSTALL}")
    return {**found, "mbr": mbr}


def _run(command: list[str], what: str) -> None:
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    try:
        result = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=300)
    except OSError as e:
        raise DiskImageError(f"{what}: cannot run {command[0]}: {e}") from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise DiskImageError(f"{what}: {command[0]} failed: {detail[-1] if detail else f'exit {result.returncode}'}")


def master_boot_record(boot_code: bytes, sectors: int) -> bytes:
    """SYSLINUX's boot code and one active partition of type EF from PART_START."""
    mbr = bytearray(SECTOR)
    mbr[:440] = boot_code[:440].ljust(440, b"\0")
    # status 0x80 (active), CHS fields at their "use LBA" maximum, type EF, LBA start and length
    mbr[446:462] = struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0xEF, b"\xfe\xff\xff", PART_START, sectors)
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr)


def build(url: str, out: str | Path, *, ipxe_dir: str | Path = IPXE_DIR, size_mib: int = 1024, fmt: str = "qcow2",
          progress: Callable[[str], None] = lambda line: None) -> Path:
    """Write the disk image to `out` (qcow2, or raw); returns its path."""
    url = check_url(url)
    if fmt not in ("qcow2", "raw"):
        raise DiskImageError(f"--format {fmt!r}: qcow2 or raw")
    if size_mib * 2048 < PART_START + FAT_SECTORS:
        raise DiskImageError(f"--size {size_mib}: at least {-(-(PART_START + FAT_SECTORS) // 2048)} MiB")
    out = Path(out)
    if not out.parent.is_dir():
        raise DiskImageError(f"{out.parent}: no such folder")
    tools = find_tools()
    efi, lkrn = find_ipxe(ipxe_dir)
    progress(f"iPXE from {efi.parent}; the chainloader asks {url}/boot/ipxe for each node's script")

    try:
        with tempfile.TemporaryDirectory(prefix="bootfleet-ipxe-disk-", dir=out.parent) as tmp:
            _assemble(url, out, Path(tmp), tools, efi, lkrn, size_mib, fmt, progress)
    except OSError as e:  # a full disk, a folder we may not write to
        raise DiskImageError(f"writing {out}: {e.strerror or e}") from None
    return out


def _assemble(url: str, out: Path, work: Path, tools: dict[str, str], efi: Path, lkrn: Path, size_mib: int,
              fmt: str, progress: Callable[[str], None]) -> None:
    script = work / "autoexec.ipxe"
    script.write_text(ipxe.chainloader(url))
    (work / "syslinux.cfg").write_text(SYSLINUX_CFG)
    fat = work / "esp.img"
    progress(f"formatting the EFI system partition (FAT, {FAT_SECTORS // 2048} MiB)")
    _run([tools["mformat"], "-i", str(fat), "-C", "-t", str(FAT_SECTORS // (64 * 32)), "-h", "64", "-s", "32",
          "-H", str(PART_START), "-v", "BOOTFLEET", "::"], "formatting the partition")
    progress("copying ipxe.efi (as EFI/BOOT/BOOTX64.EFI), ipxe.lkrn, autoexec.ipxe, syslinux.cfg")
    _run([tools["mmd"], "-i", str(fat), "::/EFI", "::/EFI/BOOT"], "making EFI/BOOT")
    _run([tools["mcopy"], "-i", str(fat), str(efi), "::/EFI/BOOT/BOOTX64.EFI"], "copying ipxe.efi")
    _run([tools["mcopy"], "-i", str(fat), str(lkrn), str(script), str(work / "syslinux.cfg"), "::/"],
         "copying ipxe.lkrn and the script")

    raw = work / "disk.raw"
    progress(f"writing the partition table and SYSLINUX (BIOS boot) into a {size_mib} MiB disk")
    with open(raw, "wb") as f:
        f.write(master_boot_record(Path(tools["mbr"]).read_bytes(), FAT_SECTORS))
        f.seek(PART_START * SECTOR)
        f.write(fat.read_bytes())
        f.truncate(size_mib * 1024 * 1024)
    _run([tools["syslinux"], "--install", "--offset", str(PART_START * SECTOR), str(raw)], "installing SYSLINUX")

    if fmt == "qcow2":
        progress(f"converting to qcow2: {out}")
        _run([tools["qemu-img"], "convert", "-f", "raw", "-O", "qcow2", str(raw), str(work / "disk.qcow2")],
             "converting to qcow2")
        os.replace(work / "disk.qcow2", out)
    else:
        os.replace(raw, out)
