"""The VSI disk image booting to `ready` over HTTPS, through a TLS terminator that speaks TLS
the way Code Engine does.

Code Engine's endpoints accept TLS 1.2 or later with six cipher suites, all ECDHE with AES-GCM
or ChaCha20-Poly1305 (codeengine docs, security.md#secure-cipher-suites). Here real nginx on
127.0.0.1 holds exactly that policy (support/tls.py, TLS_POLICY) with an RSA certificate for
10.0.2.100 from a throwaway CA (support/tls.py), in front of the running bootfleet server; the
guests reach it as https://10.0.2.100: every URL bootfleet hands out is https (BOOTFLEET_BASE_URL),
and iPXE fetches script, kernel and initrd through TLS. The one exception is the test node's
installer: busybox 1.35's
wget (the e2e initramfs, node_image.py) has no cipher suite in Code Engine's list (a TLS
handshake_failure alert against this terminator), so its profile turns its own config and
status URLs into http:// and it reaches the same terminator's plain listener on port 80. A
real installer (curl, cloud-init, Ignition: OpenSSL or Go's TLS) speaks ECDHE with AES-GCM.

The disk is `bootfleet images build-ipxe-disk --trust-ca`, with iPXE v2.0.0 built with the CA
(ipxe_source.py): iPXE trusts only roots it was built with, so that is how an operator with a
private CA gets nodes to trust the domain (docs/vpc.md). Debian 13's iPXE, which the HTTP test
boots, trusts public CAs through http://ca.ipxe.org/auto and cannot be given this CA by a script.

The policy bites: openssl's client is refused a cipher outside it and TLS 1.1, and iPXE 1.21.1
(built here with HTTPS and the CA, as Ubuntu 22.04 ships it but trusting the test CA) cannot
complete a handshake with it. Debian 12's iPXE (1.0.0+git-20190125) has no HTTPS at all.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from support import tls as tls_ca
from support.server import RunningServer
from support.tls import NginxUnavailableError, free_port
from support.tls import TlsTerminator as _TlsTerminator

from bootfleet.providers.vpc import qemu

from . import ipxe_source
from .node_image import cache_dir
from .test_ipxe_qemu import PROFILE as PROFILE_HTTP
from .test_ipxe_qemu import (  # noqa: F401 (fixtures)
    api, assert_installed, bootfleet_cli, finish_install, node_image, node_script_asked, report_times, start_vm,
    tools, uefi, unavailable,
)

pytestmark = pytest.mark.e2e

HTTPS_URL = f"https://{qemu.GUEST_ADDRESS}"
PROFILE = {**PROFILE_HTTP, "args": "console=ttyS0 panic=5 bootfleet.node={{ node.id }} "
           "bootfleet.config={{ config_url | replace('https://', 'http://') }} "
           "bootfleet.status={{ status_url | replace('https://', 'http://') }}"}


def TlsTerminator(*args, **kwargs) -> _TlsTerminator:
    try:
        return _TlsTerminator(*args, **kwargs)
    except NginxUnavailableError as e:
        unavailable(str(e))


def s_client(port: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args], input="",
                          capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def authority():
    return tls_ca.ca(cache_dir() / "https-ca")


@pytest.fixture(scope="module")
def ipxe_private_ca(authority):
    """iPXE v2.0.0 built to trust the test CA (a few minutes the first time; cached)."""
    try:
        return ipxe_source.ipxe_dir(cache_dir(), authority.cert, authority.fingerprint())
    except ipxe_source.IpxeBuildError as e:
        unavailable(f"cannot build iPXE with the test CA: {e}")


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


def test_vsi_disk_image_boots_to_ready_over_https_under_uefi_and_bios(tools, uefi, node_image, ipxe_private_ca,
                                                                      authority, clean_db, tmp_path):
    cert, key = tls_ca.server_cert(authority, tmp_path / "tls", qemu.GUEST_ADDRESS)
    images = tmp_path / "images"
    # Every URL bootfleet hands out (node script, kernel, initrd, config, status) is https://10.0.2.100/...
    server = RunningServer(env={"BOOTFLEET_IMAGES_DIR": str(images), "BOOTFLEET_LOG_LEVEL": "INFO",
                                "BOOTFLEET_ACCESS_LOG": "-", "BOOTFLEET_BASE_URL": HTTPS_URL})
    nginx = None
    runs = []
    try:
        nginx = TlsTerminator(tmp_path / "nginx", cert, key, upstream=server.port)
        env = {**server.env, "BOOTFLEET_IMAGES_DIR": str(images)}
        bootfleet_cli(env, "images", "upload", "--prefix", "e2e", str(node_image.kernel), str(node_image.initrd))
        disk = tmp_path / "bootfleet-ipxe.qcow2"
        built = bootfleet_cli(env, "images", "build-ipxe-disk", "--url", HTTPS_URL, "--out", str(disk),
                              "--ipxe-dir", str(ipxe_private_ca), "--trust-ca", str(authority.cert))
        assert f"this iPXE trusts {authority.cert}" in built and f"wrote {disk}" in built, built
        api(server, "POST", "/config/api/v1/profiles", json=PROFILE)
        api(server, "POST", "/config/api/v1/deployments", json={"name": "e2e-https", "profile": "e2e", "count": 2})
        nodes = [api(server, "POST", "/config/api/v1/nodes",
                     json={"macs": [mac], "hostname": f"e2e-https-{i}", "deployment": "e2e-https"})
                 for i, mac in enumerate(["52:54:00:e2:01:04", "52:54:00:e2:01:05"], 1)]
        # iPXE: TLS on 443; port 80 only for the busybox installer's own fetches (see the docstring).
        forwards = {f"{qemu.GUEST_ADDRESS}:443": nginx.port, qemu.GUEST_ADDRESS: nginx.plain_port}
        for node, firmware in zip(nodes, ("uefi", "bios")):
            runs.append(start_vm(node, tmp_path / "vms", forwards, firmware=firmware, boot="disk", disks=[disk]))
        for node, (vm, started), firmware in zip(nodes, runs, ("UEFI", "BIOS")):
            try:
                finish_install(server, vm, started)
            except AssertionError as e:
                raise AssertionError(f"{e}\n--- nginx ---\n{nginx.access()[-3000:]}\n{nginx.errors()[-2000:]}")
            report_times(f"VSI disk image over HTTPS, {firmware}", server, node, started)
        log = server.output()
        for node, platform in zip(nodes, ("efi", "pcbios")):
            assert_installed(server, node, "e2e-https")
            assert node_script_asked(log, node, platform), [line for line in log.splitlines() if "/boot/" in line]
        # iPXE itself fetched script, kernel and initrd through TLS 1.2 with ECDHE and AES-GCM.
        access = nginx.access()
        for what in (r"/boot/ipxe\?mac=", "/images/e2e/vmlinuz", "/images/e2e/initrd.img"):
            lines = [line for line in access.splitlines() if re.search(rf'"GET {what}', line) and '"iPXE/' in line]
            assert len(lines) >= 2, f"{what}:\n{access}"
            assert all(re.search(r" 200 TLSv1\.2 ECDHE-RSA-AES(128|256)-GCM-SHA(256|384) ", line) for line in lines), \
                lines
        # Nothing iPXE asked for went over plain HTTP; the busybox installer's fetches did (see above).
        plain = [line for line in access.splitlines() if " - - " in line]
        assert plain and all('"Wget"' in line for line in plain), plain
        assert all(re.search(r'"(GET /config/|POST /status/)', line) for line in plain), plain
        console = runs[0][0].log()
        assert "iPXE 2.0.0" in console and "file:/autoexec.ipxe... ok" in console, console[-3000:]
    finally:
        for vm, _ in runs:
            vm.stop()
        if nginx:
            nginx.stop()
        server.stop()


@pytest.fixture(scope="module")
def ipxe_1_21_https(authority):
    """iPXE v1.21.1's BIOS build with HTTPS and the test CA: TLS as Ubuntu 22.04's iPXE has it
    (RSA key exchange, CBC; no ECDHE, no GCM). A minute the first time; cached."""
    try:
        folder = ipxe_source.ipxe_dir(cache_dir(), authority.cert, authority.fingerprint(), "v1.21.1",
                                      ("bin/ipxe.lkrn",))
    except ipxe_source.IpxeBuildError as e:
        unavailable(f"cannot build iPXE v1.21.1 with the test CA: {e}")
    return folder / "ipxe.lkrn"


def test_an_ipxe_without_ecdhe_cannot_handshake(tools, ipxe_1_21_https, authority, tmp_path):
    """iPXE 1.21.1 with HTTPS and the CA it needs asks for the chainloader over https; the
    terminator finds no cipher suite in common: the policy, not trust, is what fails it. And
    build-ipxe-disk's check reads the same from the binary."""
    from bootfleet.boot import ipxe_disk

    body = ipxe_disk.unpacked(ipxe_1_21_https.read_bytes())
    assert ipxe_disk.HTTPS_FEATURE in body and bytes.fromhex(authority.fingerprint()) in body
    assert not any(entry in body for entry in ipxe_disk.ECDHE_RSA_GCM.values())

    cert, key = tls_ca.server_cert(authority, tmp_path / "tls", qemu.GUEST_ADDRESS)
    nginx = TlsTerminator(tmp_path / "nginx", cert, key, upstream=free_port())
    vm = None
    try:
        old = qemu.Tools(tools.qemu, str(ipxe_1_21_https), tools.busybox)
        vm = qemu.start("e2e-old-ipxe", "52:54:00:e2:01:09", HTTPS_URL, {f"{qemu.GUEST_ADDRESS}:443": nginx.port},
                        log_dir=tmp_path / "vms", timeout=120, tools=old)
        deadline = time.monotonic() + 90
        while "no shared cipher" not in nginx.errors() and time.monotonic() < deadline and vm.running:
            time.sleep(1)
        errors = nginx.errors()
        assert "no shared cipher" in errors, f"--- nginx ---\n{errors[-3000:]}"
        assert nginx.access() == "", nginx.access()  # not one request got through
    finally:
        if vm:
            vm.stop()
        nginx.stop()
