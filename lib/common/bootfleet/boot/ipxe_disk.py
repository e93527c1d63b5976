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

For an https URL both builds must speak TLS as Code Engine does (check_tls reads their cipher
suite table; docs/vpc.md, "HTTPS and iPXE").
"""

from __future__ import annotations

import base64
import hashlib
import lzma
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


# TLS as Code Engine speaks it (docs/security.md): TLS 1.2+, ECDHE key exchange, AES-GCM or
# ChaCha20 only. iPXE has no ChaCha20, so it needs ECDHE with AES-GCM: cipher suites 0xc02f and
# 0xc030 for an RSA certificate. iPXE keeps its suites in a linker table of struct tls_cipher_suite
# (src/include/ipxe/tls.h:203 at v2.0.0): five pointers, then `code` in network byte order, key_len,
# fixed_iv_len, record_iv_len, mac_len. The ECDHE-RSA-AES-GCM entries (src/crypto/mishmash/
# ecdhe_rsa_aes_gcm_sha256.c:35-45, ecdhe_rsa_aes_gcm_sha384.c) therefore hold these six bytes.
# iPXE gained them on 2024-01-30 (commit 963ec1c4f, "[tls] Add ECDHE cipher suites"); v1.21.1
# and Debian 12's 1.0.0+git-20190125 have neither.
ECDHE_RSA_GCM = {"ECDHE-RSA-AES128-GCM-SHA256": b"\xc0\x2f\x10\x04\x08\x00",
                 "ECDHE-RSA-AES256-GCM-SHA384": b"\xc0\x30\x20\x04\x08\x00"}
# ECDHE-ECDSA-AES128-GCM-SHA256 (src/crypto/mishmash/ecdhe_ecdsa_aes_gcm_sha256.c:35, commit
# 5aab6b7a3 of 2025-12-19, first released in v2.0.0): without it iPXE cannot use an ECDSA certificate.
ECDHE_ECDSA_GCM = b"\xc0\x2b\x10\x04\x08\x00"
# The suites are linked in even when HTTPS is not (v2.0.0 leaves HTTPS out of BIOS builds,
# src/config/general.h:62-66); a build with HTTPS lists it among its features, a NUL-ended
# string of the features table (src/net/tcp/https.c:40, FEATURE(FEATURE_PROTOCOL, "HTTPS", ...)).
HTTPS_FEATURE = b"\0HTTPS\0"
# The iPXE root CA's SHA-256 fingerprint, trusted by every build without TRUST= (src/crypto/
# rootcert.c:53-60): such a build trusts public CAs only through certificates it fetches from
# its `crosscert` source, by default http://ca.ipxe.org/auto (src/config/crypto.h:108).
IPXE_ROOT_CA = bytes.fromhex("9faf717b7f8ca2f93c256c79f8ac5591895d66d1ff3bee6397a70d29c65eed1a")
# ipxe.lkrn is compressed by util/zbin.c: raw LZMA1 with lc=2, lp=0, pb=0 (src/util/zbin.c:12-15)
# after a small uncompressed prefix; an EFI build is not compressed.
LZMA_FILTERS = [{"id": lzma.FILTER_LZMA1, "lc": 2, "lp": 0, "pb": 0, "dict_size": 1 << 24}]
PREFIX_MAX = 64 * 1024
UNPACKED_MAX = 32 * 1024 * 1024
NEW_IPXE = ("iPXE v2.0.0 or later (or built from source after 2024-01-30; https://github.com/ipxe/ipxe, "
            "docs/vpc.md says how), or Debian 13's ipxe package (1.21.1+git20250501)")


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
                             f"run a script beside it under UEFI; use {NEW_IPXE}, and give its folder with --ipxe-dir")
    return efi, lkrn


def unpacked(binary: bytes) -> bytes:
    """An iPXE build as it runs: the largest LZMA stream found in its first 64 KiB unpacked
    (ipxe.lkrn), or the file itself when there is none as large (ipxe.efi)."""
    best = b""
    for offset in range(min(len(binary), PREFIX_MAX)):
        if binary[offset] != 0:  # an LZMA stream's range coder starts with a zero byte
            continue
        try:
            body = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=LZMA_FILTERS).decompress(
                binary[offset:], max_length=UNPACKED_MAX)
        except lzma.LZMAError:
            continue
        if len(body) > len(best):
            best = body
    return best if len(best) > len(binary) else binary


def check_tls(efi: Path, lkrn: Path | None = None, trust_ca: Path | None = None) -> list[str]:
    """Refuse an iPXE that cannot complete a handshake with Code Engine, or that does not trust
    `trust_ca`; returns what the operator should know about the rest (lines for progress)."""
    builds = {efi: efi.read_bytes()}
    if lkrn is not None:
        builds[lkrn] = unpacked(lkrn.read_bytes())
    for path, binary in builds.items():
        if HTTPS_FEATURE not in binary:
            raise DiskImageError(
                f"{path} was built without HTTPS (iPXE leaves it out of BIOS builds unless config/local/general.h "
                f"has #define DOWNLOAD_PROTO_HTTPS); use {NEW_IPXE}, and give its folder with --ipxe-dir")
        if not all(entry in binary for entry in ECDHE_RSA_GCM.values()):
            raise DiskImageError(
                f"{path} cannot do TLS with ECDHE and AES-GCM, the only key exchange and ciphers Code Engine accepts "
                f"(iPXE before 2024-01-30, e.g. 1.21.1, Ubuntu 22.04's or Debian 12's package); use {NEW_IPXE}, "
                "and give its folder with --ipxe-dir")
    binary = builds[efi]
    notes = []
    if ECDHE_ECDSA_GCM not in binary:
        notes.append("this iPXE has no ECDSA cipher suites: the domain's certificate must have an RSA key "
                     "(certbot --key-type rsa); bootfleet doctor checks the one it serves")
    if trust_ca is not None:
        fingerprint = ca_fingerprint(trust_ca)
        for path, build in builds.items():
            if bytes.fromhex(fingerprint) not in build:
                raise DiskImageError(
                    f"{path} does not trust {trust_ca} (SHA-256 {fingerprint[:16]}...): iPXE takes its trusted roots "
                    f"from its build, not from a script; build it with: make bin-x86_64-efi/ipxe.efi bin/ipxe.lkrn "
                    f"CERT={trust_ca} TRUST={trust_ca} (docs/vpc.md, \"A private CA\")")
        notes.append(f"this iPXE trusts {trust_ca} (built with TRUST=)")
    elif IPXE_ROOT_CA in binary:
        notes.append("this iPXE trusts public CAs through iPXE's cross-signed roots, which it fetches at boot from "
                     "http://ca.ipxe.org/auto unless --crosscert names another source: nodes need that egress "
                     "(docs/vpc.md, \"What a node reaches at boot\")")
    return notes


def ca_fingerprint(path: Path) -> str:
    """SHA-256 of a PEM (or DER) certificate's DER bytes: the form of iPXE's TRUST= fingerprints
    (src/Makefile.housekeeping:640-643 at v2.0.0: openssl x509 -noout -sha256 -fingerprint)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DiskImageError(f"--trust-ca {path}: {e.strerror or e}") from None
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    if begin in data and end in data.partition(begin)[2]:  # PEM: the first certificate
        body = data.partition(begin)[2].partition(end)[0]
        try:
            data = base64.b64decode(b"".join(body.split()), validate=True)
        except ValueError:
            raise DiskImageError(f"--trust-ca {path}: its PEM certificate is not base64") from None
    elif not data.startswith(b"\x30"):
        raise DiskImageError(f"--trust-ca {path}: not a PEM or DER certificate")
    return hashlib.sha256(data).hexdigest()


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
          trust_ca: str | Path | None = None, crosscert: str | None = None,
          progress: Callable[[str], None] = lambda line: None) -> Path:
    """Write the disk image to `out` (qcow2, or raw); returns its path.

    An https `url` needs an iPXE that speaks TLS as Code Engine does (check_tls); `trust_ca`, a
    private CA's certificate the iPXE must have been built to trust; `crosscert`, where the
    disk's iPXE fetches cross-signed roots instead of http://ca.ipxe.org/auto."""
    url = check_url(url)
    if crosscert is not None:
        try:
            crosscert = check_url(crosscert)
        except DiskImageError:
            raise DiskImageError(f"--crosscert {crosscert!r}: an http(s) URL without query, spaces or quotes, "
                                 "e.g. http://certs.example.com/auto") from None
    if fmt not in ("qcow2", "raw"):
        raise DiskImageError(f"--format {fmt!r}: qcow2 or raw")
    if size_mib * 2048 < PART_START + FAT_SECTORS:
        raise DiskImageError(f"--size {size_mib}: at least {-(-(PART_START + FAT_SECTORS) // 2048)} MiB")
    out = Path(out)
    if not out.parent.is_dir():
        raise DiskImageError(f"{out.parent}: no such folder")
    tools = find_tools()
    efi, lkrn = find_ipxe(ipxe_dir)
    if url.startswith("https:"):
        for note in check_tls(efi, lkrn, Path(trust_ca) if trust_ca else None):
            progress(note)
    elif trust_ca:
        raise DiskImageError(f"--trust-ca with --url {url}: the CA matters only for an https URL")
    progress(f"iPXE from {efi.parent}; the chainloader asks {url}/boot/ipxe for each node's script")

    try:
        with tempfile.TemporaryDirectory(prefix="bootfleet-ipxe-disk-", dir=out.parent) as tmp:
            _assemble(url, out, Path(tmp), tools, efi, lkrn, size_mib, fmt, progress, crosscert)
    except OSError as e:  # a full disk, a folder we may not write to
        raise DiskImageError(f"writing {out}: {e.strerror or e}") from None
    return out


def _assemble(url: str, out: Path, work: Path, tools: dict[str, str], efi: Path, lkrn: Path, size_mib: int,
              fmt: str, progress: Callable[[str], None], crosscert: str | None = None) -> None:
    script = work / "autoexec.ipxe"
    script.write_text(ipxe.chainloader(url, crosscert=crosscert))
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
