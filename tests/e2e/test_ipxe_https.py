"""What real iPXE builds from Debian's packages do against a TLS terminator that speaks TLS
the way Code Engine does, booted from the VSI disk image `bootfleet images build-ipxe-disk`
writes for https://10.0.2.100.

Code Engine's endpoints accept TLS 1.2 or later with six cipher suites, all ECDHE with AES-GCM
or ChaCha20-Poly1305 (codeengine docs, security.md#secure-cipher-suites). Here real nginx on
127.0.0.1 holds exactly that policy (support/tls.py, TLS_POLICY), with a certificate for
10.0.2.100 from a throwaway CA; support/tls.HandshakeRecorder relays each guest's connection
and reads the handshake's clear-text messages (the ClientHello's offer, the ServerHello's
choice, how far it got).

What this proves, with binaries from Debian's package archive (nothing is built):
- Debian 13's iPXE (1.21.1+git20250501), under UEFI and BIOS, negotiates Code Engine's policy
  with an RSA certificate (ECDHE-RSA with AES-GCM; nginx logs no `no shared cipher`), receives
  the certificate, and refuses it because nothing it trusts vouches for the throwaway CA:
  `Permission denied (https://ipxe.org/0216eb8f)` on the UEFI console, i.e. EACCES_USELESS,
  "No usable certificates", from x509_validate_chain (src/crypto/x509.c: errfile 0x16,
  unique 0x0b; 0x8f is EFI_ACCESS_DENIED, the BIOS build's is 0216eb3c). What it lacks here
  is trust only: a public CA's certificate (through http://ca.ipxe.org/auto) or an iPXE built
  with the CA (TRUST=, ipxe.org/crypto) is what a real boot domain gives it.
- The same iPXE against the same policy with an ECDSA certificate: `no shared cipher`. It has
  no ECDHE-ECDSA suite, which is why Terraform, doctor and the docs refuse ECDSA.
- Debian sid's iPXE (2.0.0) with the ECDSA certificate: negotiated (ECDHE-ECDSA, new in iPXE
  2.0.0), then the same refusal of the certificate.

What it does not prove: a boot to `ready` over HTTPS. That needs an iPXE that trusts the test
CA, which means building iPXE with it (TRUST=/CERT=), and building iPXE from source is not
possible in this project's CI (docs/e2e.md). The HTTP e2e (test_ipxe_qemu.py) boots the same
disk image, with the same iPXE, to `ready`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from support import tls as tls_ca
from support.server import free_port
from support.tls import NginxUnavailableError
from support.tls import TlsTerminator as _TlsTerminator

from bootfleet.providers.vpc import qemu

from . import ipxe_debian13
from .node_image import cache_dir
from .test_ipxe_qemu import bootfleet_cli, tools, uefi, unavailable  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

HTTPS_URL = f"https://{qemu.GUEST_ADDRESS}"
RSA_GCM = {0xC02F, 0xC030}  # ECDHE-RSA-AES128-GCM-SHA256, ECDHE-RSA-AES256-GCM-SHA384
ECDSA_GCM = {0xC02B, 0xC02C}  # ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-ECDSA-AES256-GCM-SHA384
# iPXE's errors as its consoles print them (https://ipxe.org/<code>), from its source:
UNTRUSTED = "Permission denied (https://ipxe.org/0216eb8f)"  # EACCES_USELESS, src/crypto/x509.c; EFI
ALERT = "Operation not permitted (https://ipxe.org/410de18f)"  # EPERM_ALERT, a fatal alert (src/net/tls.c); EFI
OUTCOME_TIMEOUT = 120  # seconds for a VM's first TLS outcome; about 10 s here under TCG


def TlsTerminator(*args, **kwargs) -> _TlsTerminator:
    try:
        return _TlsTerminator(*args, **kwargs)
    except NginxUnavailableError as e:
        unavailable(str(e))


def s_client(port: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args], input="",
                          capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def authority(tmp_path_factory):
    """A throwaway CA that no iPXE trusts (made per run)."""
    return tls_ca.ca(tmp_path_factory.mktemp("https-ca"))


def ipxe_disk_of(suite: str, folder: Path) -> tuple[Path, str]:
    """The VSI disk image for https://10.0.2.100 with `suite`'s Debian iPXE, and what
    build-ipxe-disk said about it."""
    try:
        ipxe = ipxe_debian13.ipxe_dir(cache_dir(), suite)
    except ipxe_debian13.IpxeUnavailableError as e:
        unavailable(f"cannot get Debian {suite}'s iPXE: {e}")
    disk = folder / f"bootfleet-ipxe-{suite}.qcow2"
    built = bootfleet_cli(dict(os.environ), "images", "build-ipxe-disk", "--url", HTTPS_URL, "--out", str(disk),
                          "--ipxe-dir", str(ipxe))
    assert f"wrote {disk}" in built, built
    return disk, built


@pytest.fixture(scope="module")
def trixie_disk(tools, tmp_path_factory):
    return ipxe_disk_of("trixie", tmp_path_factory.mktemp("disk-trixie"))


@pytest.fixture(scope="module")
def sid_disk(tools, tmp_path_factory):
    return ipxe_disk_of("sid", tmp_path_factory.mktemp("disk-sid"))


def boot_until_tls_outcome(disk: Path, firmwares: tuple[str, ...], nginx: _TlsTerminator, log_dir: Path,
                           console: str = "") -> dict[str, tuple[qemu.VM, tls_ca.Connection]]:
    """Boot `disk` once per firmware, as a VSI boots it, each VM's https://10.0.2.100 relayed
    to nginx through its own HandshakeRecorder; stop each VM as soon as its first TLS
    connection has ended (and, under UEFI, `console` is on its serial console: under BIOS
    iPXE writes to the screen only). Returns each firmware's VM and first connection."""
    recorders = {firmware: tls_ca.HandshakeRecorder(nginx.port) for firmware in firmwares}
    vms = {}
    try:
        for i, firmware in enumerate(firmwares):
            vms[firmware] = qemu.start(f"https-{firmware}", f"52:54:00:e2:03:0{i}", HTTPS_URL,
                                       {f"{qemu.GUEST_ADDRESS}:443": recorders[firmware].port}, log_dir=log_dir,
                                       timeout=OUTCOME_TIMEOUT + 30, firmware=firmware, boot="disk", disks=[disk])
        deadline = time.monotonic() + OUTCOME_TIMEOUT
        waiting = set(firmwares)
        while waiting and time.monotonic() < deadline:
            for firmware in list(waiting):
                ended = any(c.closed for c in recorders[firmware].handshakes())
                if ended and (firmware == "bios" or console in vms[firmware].log()) or not vms[firmware].running:
                    vms[firmware].stop()
                    waiting.discard(firmware)
            time.sleep(0.2)
        results = {}
        for firmware, vm in vms.items():
            connections = recorders[firmware].handshakes()
            details = (f"{firmware}: --- serial console ---\n{vm.log()[-3000:]}\n--- qemu ---\n{vm.errors()}\n"
                       f"--- nginx ---\n{nginx.errors()[-2000:]}")
            assert firmware not in waiting and connections and connections[0].closed, \
                f"no TLS outcome within {OUTCOME_TIMEOUT} s\n{details}"
            results[firmware] = (vm, connections[0])
        return results
    finally:
        for vm in vms.values():
            vm.stop()
        for recorder in recorders.values():
            recorder.stop()


def certificates(message: bytes) -> list[bytes]:
    """The DER certificates of a TLS 1.2 Certificate message's body."""
    found, at = [], 3
    while at + 3 <= len(message):
        length = int.from_bytes(message[at:at + 3], "big")
        found.append(message[at + 3:at + 3 + length])
        at += 3 + length
    return found


def assert_stopped_at_the_certificate(connection: tls_ca.Connection, cert: Path, suites: set[int]) -> int:
    """The server chose one of `suites` and sent its certificate; the client answered nothing
    (no ClientKeyExchange): it closed the connection. Returns the suite chosen."""
    client, server = connection.flights()
    offered = tls_ca.offered_suites(client.body(tls_ca.CLIENT_HELLO))
    assert server.types == [tls_ca.SERVER_HELLO, tls_ca.CERTIFICATE, tls_ca.SERVER_KEY_EXCHANGE,
                            tls_ca.SERVER_HELLO_DONE], (server.types, server.alerts)
    hello = server.body(tls_ca.SERVER_HELLO)
    chosen = tls_ca.chosen_suite(hello)
    assert hello[:2] == b"\x03\x03" and chosen in suites and chosen in offered, (hello[:2], hex(chosen))
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    assert certificates(server.body(tls_ca.CERTIFICATE))[0] == der
    assert client.types == [tls_ca.CLIENT_HELLO] and not server.alerts, (client.types, server.alerts)
    assert tls_ca.CLIENT_KEY_EXCHANGE not in client.types
    return chosen


def test_the_tls_terminator_holds_code_engines_policy(authority, tmp_path):
    """The negative half, without a VM: what Code Engine refuses, this nginx refuses."""
    if not shutil.which("openssl"):
        unavailable("openssl is not installed: apt-get install -y openssl")
    cert, key = tls_ca.server_cert(authority, tmp_path / "tls", qemu.GUEST_ADDRESS)
    nginx = TlsTerminator(tmp_path / "nginx", cert, key, upstream=free_port())
    try:
        ok = s_client(nginx.port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256", "-CAfile",
                      str(authority.cert), "-verify_return_error", "-verify_ip", qemu.GUEST_ADDRESS)
        assert ok.returncode == 0 and "Cipher is ECDHE-RSA-AES128-GCM-SHA256" in ok.stdout, ok.stdout + ok.stderr
        for refused in (["-tls1_2", "-cipher", "AES128-SHA"],  # RSA key exchange, CBC: iPXE 1.21.1's best
                        ["-tls1_2", "-cipher", "AES128-GCM-SHA256"],  # RSA key exchange with GCM: still no
                        ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA256"],  # ECDHE with CBC: no
                        ["-tls1_1", "-cipher", "ALL:@SECLEVEL=0"]):
            result = s_client(nginx.port, *refused)
            assert result.returncode != 0 and "Cipher is (NONE)" in result.stdout, (refused, result.stdout,
                                                                                    result.stderr)
    finally:
        nginx.stop()


def test_debian13_ipxe_speaks_code_engines_tls_and_stops_at_trust_under_uefi_and_bios(tools, uefi, trixie_disk,
                                                                                      authority, tmp_path):
    """The disk image a VSI boots, with Debian 13's iPXE: ECDHE-RSA with AES-GCM is negotiated
    under both firmwares; the certificate arrives and is refused for want of a trusted root."""
    disk, built = trixie_disk
    assert "no ECDSA cipher suites" in built and "http://ca.ipxe.org/auto" in built, built
    cert, key = tls_ca.server_cert(authority, tmp_path / "tls", qemu.GUEST_ADDRESS)
    nginx = TlsTerminator(tmp_path / "nginx", cert, key, upstream=free_port())  # nothing upstream: nothing gets by
    try:
        outcome = boot_until_tls_outcome(disk, ("uefi", "bios"), nginx, tmp_path / "vms", console=UNTRUSTED)
        for firmware, (vm, connection) in outcome.items():
            chosen = assert_stopped_at_the_certificate(connection, cert, RSA_GCM)
            print(f"\n[e2e] Debian 13's iPXE, {firmware}: {tls_ca.SUITE_NAMES[chosen]}, TLS 1.2; certificate refused")
        errors = nginx.errors()
        assert "no shared cipher" not in errors and "peer closed connection in SSL handshake" in errors, errors
        assert nginx.access() == "", nginx.access()  # not one request got through
        console = outcome["uefi"][0].log()
        assert "iPXE 1.21.1+git20250501" in console and "file:/autoexec.ipxe... ok" in console, console[-3000:]
        assert f"{HTTPS_URL}/boot/ipxe... {UNTRUSTED}" in console, console[-3000:]
    finally:
        nginx.stop()


def test_debian13_ipxe_has_no_cipher_suite_for_an_ecdsa_certificate(tools, uefi, trixie_disk, authority, tmp_path):
    """Why Terraform, doctor and the docs refuse an ECDSA certificate: Code Engine's policy with
    one leaves Debian 13's iPXE no cipher suite (it offers no ECDHE-ECDSA)."""
    disk, _ = trixie_disk
    cert, key = tls_ca.server_cert(authority, tmp_path / "tls", qemu.GUEST_ADDRESS, key_type="ecdsa")
    nginx = TlsTerminator(tmp_path / "nginx", cert, key, upstream=free_port())
    try:
        outcome = boot_until_tls_outcome(disk, ("uefi",), nginx, tmp_path / "vms", console=ALERT)
        vm, connection = outcome["uefi"]
        client, server = connection.flights()
        offered = set(tls_ca.offered_suites(client.body(tls_ca.CLIENT_HELLO)))
        assert offered & tls_ca.POLICY_SUITES == RSA_GCM and not offered & tls_ca.ECDSA_SUITES, sorted(offered)
        assert server.types == [] and server.alerts == [(2, 40)], (server.types, server.alerts)  # handshake_failure
        assert "no shared cipher" in nginx.errors(), nginx.errors()[-2000:]
        assert nginx.access() == "", nginx.access()
        assert f"{HTTPS_URL}/boot/ipxe... {ALERT}" in vm.log(), vm.log()[-3000:]
    finally:
        nginx.stop()


def test_sid_ipxe_2_negotiates_with_an_ecdsa_certificate(tools, uefi, sid_disk, authority, tmp_path):
    """iPXE 2.0.0 (Debian sid's package) has the ECDHE-ECDSA suites: the same policy and
    certificate are negotiated, and only trust is left, as with RSA above."""
    disk, built = sid_disk
    assert "no ECDSA cipher suites" not in built, built
    cert, key = tls_ca.server_cert(authority, tmp_path / "tls", qemu.GUEST_ADDRESS, key_type="ecdsa")
    nginx = TlsTerminator(tmp_path / "nginx", cert, key, upstream=free_port())
    try:
        outcome = boot_until_tls_outcome(disk, ("uefi",), nginx, tmp_path / "vms", console=UNTRUSTED)
        vm, connection = outcome["uefi"]
        chosen = assert_stopped_at_the_certificate(connection, cert, ECDSA_GCM)
        print(f"\n[e2e] Debian sid's iPXE 2.0.0, uefi: {tls_ca.SUITE_NAMES[chosen]}, TLS 1.2; certificate refused")
        assert "no shared cipher" not in nginx.errors(), nginx.errors()[-2000:]
        assert nginx.access() == "", nginx.access()
        console = vm.log()
        assert "iPXE 2.0.0" in console and f"{HTTPS_URL}/boot/ipxe... {UNTRUSTED}" in console, console[-3000:]
    finally:
        nginx.stop()
