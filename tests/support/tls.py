"""TLS for the tests: a throwaway certificate authority and the server certificates it signs,
and real nginx terminating TLS with Code Engine's policy in front of a server on 127.0.0.1.

No iPXE trusts this CA (iPXE trusts only roots it was built with, and nothing is built here):
the e2e uses it to see how far a real iPXE's TLS gets with Code Engine's policy, which is up
to the certificate (tests/e2e/test_ipxe_https.py). HandshakeRecorder sits between the guest
and nginx and reads the handshake's clear-text messages (TLS 1.2: all of them up to
ChangeCipherSpec): what the client offered, what the server chose, how far it got.

Code Engine's endpoints accept TLS 1.2 or later with six cipher suites, all ECDHE with
AES-GCM or ChaCha20-Poly1305 (codeengine docs, security.md#secure-tls and
#secure-cipher-suites): TLS_POLICY, in OpenSSL's names. TLS 1.3 has only AEAD suites.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from support.server import free_port, stop_process

DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Ca:
    cert: Path
    key: Path

    def fingerprint(self) -> str:
        """SHA-256 of the DER certificate: what iPXE's TRUST= embeds (src/crypto/rootcert.c)."""
        der = x509.load_pem_x509_certificate(self.cert.read_bytes()).public_bytes(serialization.Encoding.DER)
        return hashlib.sha256(der).hexdigest()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bootfleet e2e"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def ca(folder: Path) -> Ca:
    """The cached CA in `folder` (made once: RSA 2048, ten years)."""
    folder.mkdir(parents=True, exist_ok=True)
    found = Ca(folder / "ca.pem", folder / "ca.key")
    if found.cert.exists() and found.key.exists():
        return found
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name("bootfleet e2e CA")).issuer_name(_name("bootfleet e2e CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY).not_valid_after(now + 3650 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    found.key.write_bytes(_pem_key(key))
    found.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return found


def server_cert(authority: Ca, out: Path, address: str, *, key_type: str = "rsa") -> tuple[Path, Path]:
    """A server certificate for `address` (an IP address SAN) signed by the CA: (cert, key).
    key_type "rsa" (2048) or "ecdsa" (P-256). Valid from yesterday for 30 days."""
    ca_key = serialization.load_pem_private_key(authority.key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(authority.cert.read_bytes())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if key_type == "rsa" \
        else ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(address)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY).not_valid_after(now + 30 * DAY)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out / f"server-{key_type}.pem", out / f"server-{key_type}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_pem_key(key))
    return cert_path, key_path


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


class NginxUnavailableError(RuntimeError):
    """nginx is not installed."""


class TlsTerminator:
    """Real nginx on 127.0.0.1: TLS on .port (Code Engine's policy unless `policy` says otherwise)
    and plain HTTP on .plain_port, both proxying to 127.0.0.1:`upstream`."""

    def __init__(self, runtime: Path, cert: Path, key: Path, upstream: int, policy: dict | None = None):
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.access(nginx, os.X_OK):
            raise NginxUnavailableError("nginx is not installed: apt-get install -y nginx")
        self.runtime = runtime
        runtime.mkdir(parents=True, exist_ok=True)
        self.port, self.plain_port = free_port(), free_port()
        conf = runtime / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user="user root;" if os.geteuid() == 0 else "", runtime=runtime,
                                          port=self.port, plain_port=self.plain_port, cert=cert, key=key,
                                          upstream=upstream, **(policy or TLS_POLICY)))
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
        stop_process(self.proc, group=True)


# TLS cipher suite codes (IANA) in OpenSSL's names: Code Engine's six, and those an older
# client offers instead.
SUITE_NAMES = {
    0xC02B: "ECDHE-ECDSA-AES128-GCM-SHA256", 0xC02C: "ECDHE-ECDSA-AES256-GCM-SHA384",
    0xC02F: "ECDHE-RSA-AES128-GCM-SHA256", 0xC030: "ECDHE-RSA-AES256-GCM-SHA384",
    0xCCA9: "ECDHE-ECDSA-CHACHA20-POLY1305", 0xCCA8: "ECDHE-RSA-CHACHA20-POLY1305",
}
POLICY_SUITES = {code for code, name in SUITE_NAMES.items() if name in TLS_POLICY["ciphers"].split(":")}
ECDSA_SUITES = {code for code, name in SUITE_NAMES.items() if "-ECDSA-" in name}
# Handshake message types (RFC 5246 7.4) and the alerts (7.2) the e2e looks for.
CLIENT_HELLO, SERVER_HELLO, CERTIFICATE, SERVER_KEY_EXCHANGE, SERVER_HELLO_DONE, CLIENT_KEY_EXCHANGE = 1, 2, 11, 12, \
    14, 16
ALERTS = {40: "handshake_failure", 42: "bad_certificate", 48: "unknown_ca", 0: "close_notify"}


@dataclass
class Flight:
    """One side's clear-text part of a TLS 1.2 handshake: handshake messages (type, body) and
    alerts (level, description) before its ChangeCipherSpec."""
    messages: list[tuple[int, bytes]]
    alerts: list[tuple[int, int]]

    @property
    def types(self) -> list[int]:
        return [kind for kind, _ in self.messages]

    def body(self, kind: int) -> bytes | None:
        return next((body for k, body in self.messages if k == kind), None)


def parse_flight(data: bytes) -> Flight:
    handshake, alerts = b"", []
    while len(data) >= 5:
        kind, _version, length = struct.unpack("!BHH", data[:5])
        fragment, data = data[5:5 + length], data[5 + length:]
        if kind == 20:  # ChangeCipherSpec: what follows is encrypted
            break
        if kind == 22:
            handshake += fragment
        elif kind == 21 and len(fragment) == 2:
            alerts.append((fragment[0], fragment[1]))
    messages = []
    while len(handshake) >= 4:
        length = int.from_bytes(handshake[1:4], "big")
        if len(handshake) < 4 + length:
            break
        messages.append((handshake[0], handshake[4:4 + length]))
        handshake = handshake[4 + length:]
    return Flight(messages, alerts)


def offered_suites(client_hello: bytes) -> list[int]:
    """The cipher suites a ClientHello's body offers, in its order."""
    at = 2 + 32  # client_version, random
    at += 1 + client_hello[at]  # session_id
    (length,) = struct.unpack("!H", client_hello[at:at + 2])
    return [int.from_bytes(client_hello[i:i + 2], "big") for i in range(at + 2, at + 2 + length, 2)]


def chosen_suite(server_hello: bytes) -> int:
    """The cipher suite a ServerHello's body chose."""
    at = 2 + 32
    at += 1 + server_hello[at]
    return int.from_bytes(server_hello[at:at + 2], "big")


@dataclass
class Connection:
    """The bytes each side sent on one relayed connection, and whether it has ended."""
    client: bytearray = field(default_factory=bytearray)
    server: bytearray = field(default_factory=bytearray)
    closed: bool = False

    def flights(self) -> tuple[Flight, Flight]:
        return parse_flight(bytes(self.client)), parse_flight(bytes(self.server))


class HandshakeRecorder:
    """A TCP relay on 127.0.0.1:.port to 127.0.0.1:`upstream` that keeps what each side sent
    (the first `keep` bytes), so a test can read the TLS handshake between a guest and nginx.
    Stop it with .stop()."""

    def __init__(self, upstream: int, keep: int = 64 * 1024):
        self.upstream, self.keep = upstream, keep
        self.connections: list[Connection] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.5)
        self.port = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), 10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            connection = Connection()
            with self._lock:
                self.connections.append(connection)
                self._sockets += [client, server]
            ends = threading.Barrier(2, action=lambda c=connection: setattr(c, "closed", True))
            for source, sink, kept in ((client, server, connection.client), (server, client, connection.server)):
                threading.Thread(target=self._pump, args=(source, sink, kept, ends), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, kept: bytearray, ends: threading.Barrier) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    kept += data[:max(0, self.keep - len(kept))]
                sink.sendall(data)
        except OSError:
            pass
        for end in (sink, source):  # one side ending ends the relayed connection
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            ends.wait(15)
        except threading.BrokenBarrierError:
            pass

    def handshakes(self) -> list[Connection]:
        with self._lock:
            return list(self.connections)

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                try:
                    s.close()
                except OSError:
                    pass
