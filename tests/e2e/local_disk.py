"""The "installed" local disk of the e2e nodes: booted, it says so on the serial console
and resets the machine (QEMU runs with -no-reboot, so the VM ends).

One small raw image serves both firmwares:

    sector 0     boot code (BIOS: 16-bit, writes MARKER_BIOS to COM1) + one active partition, type EF
    1 MiB on     FAT (mtools): /EFI/BOOT/BOOTX64.EFI, a 1 KiB PE32+ EFI application that
                 writes MARKER_EFI to COM1

Both write straight to the 16550 at I/O port 0x3f8 and reset through the keyboard
controller (port 0x64), so nothing here depends on a firmware service. Built with
mtools into the e2e cache (BOOTFLEET_E2E_CACHE); the tests attach it in snapshot mode.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

MARKER_BIOS = "bootfleet-e2e: booted the local disk (BIOS)"
MARKER_EFI = "bootfleet-e2e: booted the local disk (EFI)"
PART_START, DISK_SECTORS = 2048, 8 * 2048  # an 8 MiB disk, the partition from 1 MiB

# x86 tail shared by both programs: cld; (lodsb; out dx,al; loop) over the message, then
# mov al,0xfe; out 0x64,al (reset); hlt; jmp back to the hlt.
_SEND_AND_RESET = b"\xfc\xac\xee\xe2\xfc" + b"\xb0\xfe\xe6\x64" + b"\xf4\xeb\xfd"


def bios_boot_code(message: bytes) -> bytes:
    """Real-mode code loaded at 0x7c00: ds=0, si=message, cx=length, dx=COM1."""
    head = b"\xfa\x31\xc0\x8e\xd8"  # cli; xor ax,ax; mov ds,ax
    size = len(head) + 3 + 3 + 3 + len(_SEND_AND_RESET)
    code = (head + b"\xbe" + struct.pack("<H", 0x7C00 + size) + b"\xb9" + struct.pack("<H", len(message))
            + b"\xba\xf8\x03" + _SEND_AND_RESET)
    assert len(code) == size
    return code + message


def efi_application(message: bytes) -> bytes:
    """A PE32+ EFI application (subsystem 10) of one .text section, no relocations needed:
    lea rsi,[rip+message]; mov ecx,length; mov dx,0x3f8; then send and reset."""
    body = b"\xb9" + struct.pack("<I", len(message)) + b"\x66\xba\xf8\x03" + _SEND_AND_RESET
    text = (b"\x48\x8d\x35" + struct.pack("<i", len(body)) + body + message).ljust(0x200, b"\0")
    dos = bytearray(0x40)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 0x40)
    coff = struct.pack("<HHIIIHH", 0x8664, 1, 0, 0, 0, 0xF0, 0x0022)  # x86-64, 1 section, executable
    optional = struct.pack("<HBBIIIII", 0x20B, 0, 0, 0x200, 0, 0, 0x1000, 0x1000)  # PE32+, entry = .text
    optional += struct.pack("<QIIHHHHHHIIIIHHQQQQII", 0x10000000, 0x1000, 0x200, 0, 0, 0, 0, 0, 0, 0,
                            0x2000, 0x200, 0, 10, 0, 0x10000, 0x1000, 0x10000, 0x1000, 0, 16)
    optional += b"\0" * (16 * 8)  # no data directories
    section = struct.pack("<8sIIIIIIHHI", b".text", 0x1000, 0x1000, 0x200, 0x200, 0, 0, 0, 0, 0x60000020)
    return (bytes(dos) + b"PE\0\0" + coff + optional + section).ljust(0x200, b"\0") + text


def build(cache: Path) -> Path:
    """The disk image, built into `cache` once (mtools must be installed)."""
    disk = cache / "local-disk-v1.img"
    if disk.exists():
        return disk
    if not shutil.which("mformat"):
        raise FileNotFoundError("mtools (mformat, mcopy) not found: apt-get install -y mtools")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / ".local-disk"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        fat, app = tmp / "esp.img", tmp / "BOOTX64.EFI"
        app.write_bytes(efi_application(MARKER_EFI.encode() + b"\r\n"))
        env = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}
        cylinders = (DISK_SECTORS - PART_START) // (64 * 32)
        for command in (["mformat", "-i", str(fat), "-C", "-t", str(cylinders), "-h", "64", "-s", "32",
                         "-H", str(PART_START), "::"],
                        ["mmd", "-i", str(fat), "::/EFI", "::/EFI/BOOT"],
                        ["mcopy", "-i", str(fat), str(app), "::/EFI/BOOT/BOOTX64.EFI"]):
            subprocess.run(command, check=True, capture_output=True, env=env, timeout=60)
        mbr = bytearray(512)
        code = bios_boot_code(MARKER_BIOS.encode() + b"\r\n")
        mbr[:len(code)] = code
        mbr[446:462] = struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0xEF, b"\xfe\xff\xff", PART_START,
                                   DISK_SECTORS - PART_START)
        mbr[510:512] = b"\x55\xaa"
        image = tmp / "disk.img"
        with open(image, "wb") as f:
            f.write(mbr)
            f.seek(PART_START * 512)
            f.write(fat.read_bytes())
            f.truncate(DISK_SECTORS * 512)
        image.rename(disk)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return disk
