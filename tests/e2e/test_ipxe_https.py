"""The VSI disk image booting to `ready` over HTTPS, through a TLS terminator that speaks TLS
the way Code Engine does.

Code Engine's endpoints accept TLS 1.2 or later with six cipher suites, all ECDHE with AES-GCM
or ChaCha20-Poly1305 (codeengine docs, security.md#secure-cipher-suites). Here real nginx on
127.0.0.1 holds exactly that policy (TLS_POLICY below) with an RSA certificate for 10.0.2.100
from a throwaway CA (tls_ca.py), in front of the running bootfleet server; the guests reach it
as https://10.0.2.100 and nothing else (no port 80 forward: every fetch, iPXE's and the node's
own, goes through TLS). The one exception is the test node's installer: busybox 1.35's
wget (the e2e initramfs, node_image.py) has no cipher suite in Code Engine's list (a TLS
handshake_failure alert against this terminator), so its profile turns its own config and
status URLs into http:// and it reaches the same terminator's plain listener on port 80. A
real installer (curl, cloud-init, Ignition: OpenSSL or Go's TLS) speaks ECDHE with AES-GCM.

The disk is `bootfleet images build-ipxe-disk --trust-ca`, with iPXE v2.0.0 built with the CA
(ipxe_source.py): iPXE trusts only roots it was built with, so that is how an operator with a
private CA gets nodes to trust the domain (docs/vpc.md). Debian 13's iPXE, which the HTTP test
boots, trusts public CAs through http://ca.ipxe.org/auto and cannot be given this CA by a script.

The policy bites: openssl's client is refused a cipher outside it and TLS 1.1, and Debian 12's
iPXE (1.0.0+git-20190125, no ECDHE) cannot complete a handshake with it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from support.server import RunningServer

from bootfleet.providers.vpc import qemu

from . import ipxe_source, tls_ca
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
# Code Engine's policy (codeengine docs, security.md#secure-tls and #secure-cipher-suites), in
# OpenSSL's names; TLS 1.3 has only AEAD suites, all of them ECDHE/ AES-GCM / ChaCha20.
TLS_POLICY = {
    "protocols": "TLSv1.2 TLSv1.3",
    "ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:"
               "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305",
}
NGINX_CONF = """worker_processes 1;
{user}
pid {runtime}/nginx.pid;
error_log {runtime}/error.log info;
events {{ worker_connections 64; }}
http {{
    log_format tls '$remote_addr "$request" $status $ssl_protocol $ssl_cipher "$http_user_agent"';
    access_log {runtime}/access.log tls;
    client_body_temp_path {runtime}/body;
    proxy_temp_path {runtime}/proxy;
    fastcgi_temp_path {runtime}/fastcgi;
    uwsgi_temp_path {runtime}/uwsgi;
    scgi_temp_path {runtime}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols {protocols};
        ssl_ciphers {ciphers};
        ssl_prefer_server_ciphers on;
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header Host $host;
            proxy_http_version 1.1;
            proxy_read_timeout 60s;
        }}
    }}
    server {{
        listen 127.0.0.1:{plain_port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header Host $host;
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TlsTerminator:
    """Real nginx on 127.0.0.1 with Code Engine's TLS policy, proxying to bootfleet."""

    def __init__(self, runtime: Path, cert: Path, key: Path, upstream: int):
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.access(nginx, os.X_OK):
            unavailable("nginx is not installed: apt-get install -y nginx")
        self.runtime = runtime
        runtime.mkdir(parents=True, exist_ok=True)
        self.port, self.plain_port = free_port(), free_port()
        conf = runtime / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user="user root;" if os.geteuid() == 0 else "", runtime=runtime,
                                          port=self.port, plain_port=self.plain_port, cert=cert, key=key, upstream=upstream, **TLS_POLICY))
        self.proc = subprocess.Popen([nginx, "-e", str(runtime / "error.log"), "-p", str(runtime), "-c", str(conf),
                                      "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"nginx did not start:\n{self.errors()}") from None
                time.sleep(0.1)

    def access(self) -> str:
        path = self.runtime / "access.log"
        return path.read_text() if path.exists() else ""

    def errors(self) -> str:
        path = self.runtime / "error.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


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


def test_an_ipxe_without_ecdhe_cannot_handshake(tools, authority, tmp_path):
    """Debian 12's iPXE (the qemu module's BIOS ipxe.lkrn) asks for the chainloader over
    https and the terminator finds no cipher suite in common: the policy is what fails it."""
    cert, key = tls_ca.server_cert(authority, tmp_path / "tls", qemu.GUEST_ADDRESS)
    nginx = TlsTerminator(tmp_path / "nginx", cert, key, upstream=free_port())
    vm = None
    try:
        vm = qemu.start("e2e-old-ipxe", "52:54:00:e2:01:09", HTTPS_URL, {f"{qemu.GUEST_ADDRESS}:443": nginx.port},
                        log_dir=tmp_path / "vms", timeout=120)
        deadline = time.monotonic() + 90
        while "no shared cipher" not in nginx.errors() and time.monotonic() < deadline and vm.running:
            time.sleep(1)
        errors, console = nginx.errors(), vm.log()
        assert "no shared cipher" in errors, f"--- nginx ---\n{errors[-3000:]}\n--- console ---\n{console[-3000:]}"
        assert nginx.access() == "", nginx.access()
    finally:
        if vm:
            vm.stop()
        nginx.stop()
