"""`bootfleet images build-ipxe-disk`: the disk image's layout, read back with the tools
that wrote it, and its one-line errors. The image booting to `ready` under UEFI and BIOS
is the e2e test (tests/e2e/test_ipxe_qemu.py::test_vsi_disk_image_boots_to_ready_under_uefi_and_bios).

Here ipxe.efi is a stand-in file (the real one, iPXE 1.21.1, is downloaded only by the e2e):
the layout and the script are what is checked, not iPXE. The stand-in carries the bytes of
iPXE's ECDHE-RSA-AES-GCM cipher suite entries, which an https URL needs (ipxe_disk.check_tls);
the TLS check is also run on the real builds the e2e cache holds, when it holds them.
"""

from __future__ import annotations

import datetime
import lzma
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support import ROOT

from bootfleet.boot import ipxe, ipxe_disk

E2E_CACHE = Path(os.environ.get("BOOTFLEET_E2E_CACHE") or Path.home() / ".cache" / "bootfleet" / "e2e")
DEBIAN13_EFI = E2E_CACHE / "ipxe-trixie" / "usr" / "lib" / "ipxe" / "ipxe.efi"  # tests/e2e/ipxe_debian13.py
# What the ECDHE-RSA-AES-GCM entries of iPXE's cipher suite table look like in an EFI build (ipxe_disk.py).
SUITES = b"".join(b"\0" * 40 + entry + b"\0\0" for entry in ipxe_disk.ECDHE_RSA_GCM.values())
TLS = SUITES + ipxe_disk.HTTPS_FEATURE  # and the HTTPS feature's name (src/net/tcp/https.c)


def lkrn_like(body: bytes) -> bytes:
    """A stand-in ipxe.lkrn: an uncompressed prefix, then `body` packed as util/zbin.c packs it."""
    packed = lzma.compress(body, format=lzma.FORMAT_RAW, filters=[{**ipxe_disk.LZMA_FILTERS[0], "preset": 9}])
    return b"\xeb\x3c prefix and unlzma" * 20 + packed

HAVE_TOOLS = all(shutil.which(tool) for tool in ("mformat", "syslinux", "qemu-img"))
pytestmark = pytest.mark.skipif(
    not HAVE_TOOLS and not os.environ.get("CI"),  # CI installs them (.ci/run): there it must run
    reason=f"needs mtools, syslinux and qemu-utils: {ipxe_disk.INSTALL}")

URL = "https://boot.example.com"


@pytest.fixture
def ipxe_dir(tmp_path):
    """A folder that looks like iPXE 1.21.1's: an EFI file naming autoexec.ipxe, Debian's ipxe.lkrn."""
    folder = tmp_path / "ipxe"
    folder.mkdir()
    (folder / "ipxe.efi").write_bytes(b"MZ stand-in for ipxe.efi; loads autoexec.ipxe\0" * 100 + TLS)
    (folder / "ipxe.lkrn").write_bytes(lkrn_like(b"stand-in ipxe.lkrn with its own TLS\0" * 2000 + TLS))
    return folder


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bootfleet.cli", "images", "build-ipxe-disk", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def mtype(image, path: str) -> bytes:
    return subprocess.run(["mtype", "-i", f"{image}@@{ipxe_disk.PART_START * 512}", f"::{path}"], check=True,
                          capture_output=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}).stdout


def test_the_disk_has_the_chainloader_for_the_url_beside_both_ipxe_builds(ipxe_dir, tmp_path):
    out = tmp_path / "vsi.qcow2"
    result = cli("--url", URL + "/", "--out", str(out), "--ipxe-dir", str(ipxe_dir))
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stdout.splitlines() if line.startswith("build-ipxe-disk: ")]
    assert len(progress) >= 4 and f"wrote {out}" in result.stdout, result.stdout
    info = subprocess.run(["qemu-img", "info", "--output=json", str(out)], capture_output=True, text=True, check=True)
    assert '"format": "qcow2"' in info.stdout and '"virtual-size": 1073741824' in info.stdout

    raw = tmp_path / "vsi.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(out), str(raw)], check=True)
    mbr = raw.read_bytes()[:512]
    assert mbr[510:] == b"\x55\xaa"
    status, kind, start, length = struct.unpack("<B3xB3xII", mbr[446:462])
    assert (status, kind, start, length) == (0x80, 0xEF, ipxe_disk.PART_START, ipxe_disk.FAT_SECTORS)
    assert mbr[:440] == open(next(p for p in ipxe_disk.MBR_PATHS if os.path.exists(p)), "rb").read()[:440]

    # UEFI: the removable-media path and the script iPXE runs from beside itself.
    assert mtype(raw, "/EFI/BOOT/BOOTX64.EFI") == (ipxe_dir / "ipxe.efi").read_bytes()
    assert mtype(raw, "/autoexec.ipxe").decode() == ipxe.chainloader(URL)
    # BIOS: SYSLINUX installed in the partition, booting ipxe.lkrn with the same script.
    assert mtype(raw, "/ipxe.lkrn") == (ipxe_dir / "ipxe.lkrn").read_bytes()
    assert "KERNEL ipxe.lkrn" in mtype(raw, "/syslinux.cfg").decode()
    assert "INITRD autoexec.ipxe" in mtype(raw, "/syslinux.cfg").decode()
    assert len(mtype(raw, "/ldlinux.sys")) > 0
    assert b"SYSLINUX" in raw.read_bytes()[ipxe_disk.PART_START * 512:][:512]


def test_raw_format_and_size(ipxe_dir, tmp_path):
    out = tmp_path / "vsi.img"
    result = cli("--url", "http://10.0.2.100", "--out", str(out), "--ipxe-dir", str(ipxe_dir), "--format", "raw",
                 "--size", "64")
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size == 64 * 1024 * 1024


@pytest.mark.parametrize("url, says", [
    ("boot.example.com", "give bootfleet's base URL"),
    ("ftp://boot.example.com", "give bootfleet's base URL"),
    ("https://", "give bootfleet's base URL"),
    ("https://boot.example.com/?x=1", "no query"),
    ("https://boot.example.com/${x}", "no query"),
    ("https://boot.example.com/a b", "no query"),
])
def test_bad_urls_are_one_line_errors_and_write_nothing(ipxe_dir, tmp_path, url, says):
    out = tmp_path / "vsi.qcow2"
    result = cli("--url", url, "--out", str(out), "--ipxe-dir", str(ipxe_dir))
    assert result.returncode == 1 and not out.exists()
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("bootfleet: --url ") and says in result.stderr
    assert "Traceback" not in result.stderr


def test_old_or_missing_ipxe_and_bad_options_are_one_line_errors(ipxe_dir, tmp_path):
    out = tmp_path / "vsi.qcow2"
    # iPXE before 1.21.1 (Debian 12's): its EFI build cannot run a script beside it.
    (ipxe_dir / "ipxe.efi").write_bytes(b"MZ an old iPXE EFI build" * 100)
    result = cli("--url", URL, "--out", str(out), "--ipxe-dir", str(ipxe_dir))
    assert result.returncode == 1 and "older than 1.21.1" in result.stderr and result.stderr.count("\n") == 1
    for args, says in (
        (["--ipxe-dir", str(tmp_path / "nothing")], "ipxe.efi not found"),
        (["--ipxe-dir", str(ipxe_dir), "--size", "8"], "--size 8: at least 17 MiB"),
        (["--ipxe-dir", str(ipxe_dir), "--out", str(tmp_path / "no" / "vsi.qcow2")], "no such folder"),
    ):
        result = cli("--url", URL, "--out", str(out), *args) if "--out" not in args else cli("--url", URL, *args)
        assert result.returncode == 1 and says in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert not out.exists() and list(tmp_path.glob("bootfleet-ipxe-disk-*")) == []


def test_an_output_it_cannot_write_is_a_one_line_error(ipxe_dir, tmp_path):
    taken = tmp_path / "taken.qcow2"
    taken.mkdir()  # a folder where the image should go: the final rename fails
    result = cli("--url", URL, "--out", str(taken), "--ipxe-dir", str(ipxe_dir))
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"bootfleet: writing {taken}: ") and "Traceback" not in result.stderr
    assert list(tmp_path.glob("bootfleet-ipxe-disk-*")) == []


def test_missing_tools_name_the_packages(ipxe_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no mtools, syslinux or qemu-img on it
    with pytest.raises(ipxe_disk.DiskImageError, match="missing mtools, qemu-utils, syslinux; install with: apt-get"):
        ipxe_disk.build(URL, tmp_path / "vsi.qcow2", ipxe_dir=ipxe_dir)


def test_an_https_url_needs_an_ipxe_with_ecdhe_and_aes_gcm(ipxe_dir, tmp_path):
    """Code Engine accepts only ECDHE with AES-GCM or ChaCha20 (docs/security.md): an iPXE 1.21.1
    (it runs autoexec.ipxe, but its TLS has neither) is refused for an https URL, with the version
    to get; an http URL does no TLS and is built."""
    efi, lkrn = ipxe_dir / "ipxe.efi", ipxe_dir / "ipxe.lkrn"
    good_efi = efi.read_bytes()
    efi.write_bytes(b"MZ iPXE 1.21.1: loads autoexec.ipxe, TLS with RSA key exchange\0HTTPS\0" * 100)
    out = tmp_path / "vsi.qcow2"
    result = cli("--url", URL, "--out", str(out), "--ipxe-dir", str(ipxe_dir))
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and not out.exists(), result.stderr
    assert f"{efi} cannot do TLS with ECDHE and AES-GCM" in result.stderr
    assert "iPXE v2.0.0 or later" in result.stderr and "Debian 13's ipxe package" in result.stderr
    assert "https://github.com/ipxe/ipxe" in result.stderr
    result = cli("--url", "http://10.0.2.100", "--out", str(out), "--ipxe-dir", str(ipxe_dir))
    assert result.returncode == 0 and out.exists(), result.stderr
    out.unlink()

    # iPXE v2.0.0's BIOS build as it comes: the suites are linked in, HTTPS is not (read from inside
    # the compressed ipxe.lkrn).
    efi.write_bytes(good_efi)
    lkrn.write_bytes(lkrn_like(b"stand-in ipxe.lkrn, HTTP only\0" * 2000 + SUITES))
    result = cli("--url", URL, "--out", str(out), "--ipxe-dir", str(ipxe_dir))
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and not out.exists(), result.stderr
    assert f"{lkrn} was built without HTTPS" in result.stderr and "DOWNLOAD_PROTO_HTTPS" in result.stderr


def test_the_tls_check_on_real_ipxe_builds(tmp_path):
    """Debian 13's iPXE (1.21.1+git20250501) has HTTPS, ECDHE and AES-GCM in both builds but no ECDSA
    suites: accepted, with a note that the certificate must be RSA and that it fetches cross-signed
    roots from ca.ipxe.org. Debian 12's (/usr/lib/ipxe, 1.0.0+git-20190125) has neither: refused."""
    checked = 0
    for build in ("ipxe.efi", "ipxe.lkrn"):
        old = Path("/usr/lib/ipxe") / build
        if old.exists():
            with pytest.raises(ipxe_disk.DiskImageError, match="without HTTPS|cannot do TLS with ECDHE"):
                ipxe_disk.check_tls(old.resolve())
            checked += 1
    if DEBIAN13_EFI.exists():
        notes = " ".join(ipxe_disk.check_tls(DEBIAN13_EFI, DEBIAN13_EFI.with_name("ipxe.lkrn")))
        assert "no ECDSA cipher suites" in notes and "certbot --key-type rsa" in notes
        assert "http://ca.ipxe.org/auto" in notes
        checked += 1
    if not checked:
        pytest.skip("no real iPXE here: install Debian's ipxe, or run the e2e once (it downloads Debian 13's)")


def test_trust_ca_must_be_built_into_the_ipxe(ipxe_dir, tmp_path):
    """A private CA is trusted only by an iPXE built with it (TRUST=): --trust-ca checks the build
    holds the CA's SHA-256 fingerprint and, if not, says how to build one."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "private CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    ca = tmp_path / "ca.pem"
    ca.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fingerprint = cert.fingerprint(hashes.SHA256())
    assert ipxe_disk.ca_fingerprint(ca) == fingerprint.hex()

    out = tmp_path / "vsi.qcow2"
    result = cli("--url", URL, "--out", str(out), "--ipxe-dir", str(ipxe_dir), "--trust-ca", str(ca))
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and not out.exists(), result.stderr
    assert f"does not trust {ca}" in result.stderr and f"CERT={ca} TRUST={ca}" in result.stderr

    efi = ipxe_dir / "ipxe.efi"
    efi.write_bytes(efi.read_bytes() + fingerprint)  # where TRUST= puts it: src/crypto/rootcert.c, fingerprints[]
    result = cli("--url", URL, "--out", str(out), "--ipxe-dir", str(ipxe_dir), "--trust-ca", str(ca))
    assert result.returncode == 1 and f"ipxe.lkrn does not trust {ca}" in result.stderr, result.stderr
    (ipxe_dir / "ipxe.lkrn").write_bytes(lkrn_like(b"stand-in ipxe.lkrn\0" * 2000 + TLS + fingerprint))
    result = cli("--url", URL, "--out", str(out), "--ipxe-dir", str(ipxe_dir), "--trust-ca", str(ca),
                 "--crosscert", "http://certs.example.com/auto", "--format", "raw", "--size", "64")
    assert result.returncode == 0, result.stderr
    assert f"this iPXE trusts {ca}" in result.stdout
    script = mtype(out, "/autoexec.ipxe").decode()
    assert script == ipxe.chainloader(URL, crosscert="http://certs.example.com/auto")
    assert "\nset crosscert http://certs.example.com/auto\n" in script
