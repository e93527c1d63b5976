"""`bootfleet doctor` meets the domain's certificate as a node's iPXE will: real nginx holding
Code Engine's TLS policy (support/tls.py) in front of a real bootfleet server.

An RSA certificate passes; an ECDSA one fails, naming Debian 13's iPXE and certbot's
--key-type rsa (iPXE before v2.0.0 has no ECDHE-ECDSA suite); a server that will not do TLS 1.2
with ECDHE-RSA and AES-GCM fails too.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support import ADMIN_TOKEN, tls
from support.server import RunningServer, free_port

from bootfleet import doctor

CLIENT_ENV = {k: v for k, v in os.environ.items() if not k.startswith("BOOTFLEET_")}


@pytest.fixture(scope="module")
def authority(tmp_path_factory):
    return tls.ca(tmp_path_factory.mktemp("ca"))


def terminator(tmp_path, authority, upstream: int, key_type: str = "rsa", policy: dict | None = None):
    cert, key = tls.server_cert(authority, tmp_path / "tls", "127.0.0.1", key_type=key_type)
    try:
        return tls.TlsTerminator(tmp_path / "nginx", cert, key, upstream=upstream, policy=policy)
    except tls.NginxUnavailableError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(e))


def test_doctor_passes_an_rsa_certificate_through_code_engines_policy(authority, tmp_path, clean_db):
    server = RunningServer()
    nginx = terminator(tmp_path, authority, server.port)
    try:
        env = {**CLIENT_ENV, "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "REQUESTS_CA_BUNDLE": str(authority.cert)}
        result = subprocess.run([sys.executable, "-m", "bootfleet.cli", "--url", f"https://127.0.0.1:{nginx.port}",
                                 "--token", ADMIN_TOKEN, "doctor"], env=env, capture_output=True, text=True,
                                timeout=120)
        line = next((x for x in result.stdout.splitlines() if "certificate" in x), "")
        assert line.startswith("ok") and "RSA key" in line and "ECDHE-RSA-AES" in line, result.stdout + result.stderr
        assert "trusted by this machine's CAs" in line and "NOT" not in line, line
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        nginx.stop()
        server.stop()


def test_an_ecdsa_certificate_fails_naming_the_ipxe_and_certbots_flag(authority, tmp_path):
    nginx = terminator(tmp_path, authority, free_port(), key_type="ecdsa")
    try:
        check = doctor.certificate_check(f"https://127.0.0.1:{nginx.port}", timeout=5)
        assert check["ok"] is False and "ECDSA key" in check["detail"], check
        assert "Debian 13's iPXE" in check["detail"] and "certbot --key-type rsa" in check["detail"], check
    finally:
        nginx.stop()


def test_a_server_without_ecdhe_gcm_fails_and_an_http_url_is_not_checked(authority, tmp_path):
    """TLS 1.2 with RSA key exchange and CBC only (what iPXE 1.21.1 speaks): iPXE's handshake fails;
    the certificate is not trusted here (no CA bundle given), which the detail says."""
    nginx = terminator(tmp_path, authority, free_port(),
                       policy={"protocols": "TLSv1.2", "ciphers": "AES128-SHA:AES256-SHA"})
    try:
        check = doctor.certificate_check(f"https://127.0.0.1:{nginx.port}", timeout=5)
        assert check["ok"] is False and "refuses TLS 1.2 with ECDHE-RSA-AES128-GCM-SHA256" in check["detail"], check
    finally:
        nginx.stop()
    nginx = terminator(tmp_path / "ok", authority, free_port())
    try:
        check = doctor.certificate_check(f"https://127.0.0.1:{nginx.port}", timeout=5)
        assert check["ok"] is True and "NOT trusted by this machine's CAs" in check["detail"], check
    finally:
        nginx.stop()
    assert doctor.certificate_check("http://127.0.0.1:1") is None
