"""A recording TCP proxy on 127.0.0.1: what a client really sends, byte for byte.

    with RecordingProxy("127.0.0.1", upstream_port, tls=True) as proxy:
        client talks to proxy.url (https, trusting proxy.ca_file) ...
        proxy.requests()   # [(request line, {header: value}, body bytes)], in order

It forwards both ways unchanged and keeps what the client sent, so a test can check the
request on the wire (headers, framing, body) rather than what our code asked the SDK for.
With `tls=True` the client speaks HTTPS to it (a certificate for 127.0.0.1 made on the
spot) and the upstream gets plain HTTP: SDKs frame some requests differently over TLS
(boto3 sends `aws-chunked` bodies with checksum trailers only over HTTPS).
"""

from __future__ import annotations

import datetime
import socket
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Self


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 (its own CA), as PEM files."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "proxy.crt", directory / "proxy.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class RecordingProxy:
    """`upstream_port` None: `upstream_host` is a unix socket's path (a local PostgreSQL)."""

    def __init__(self, upstream_host: str, upstream_port: int | None, tls: bool = False):
        self.upstream = upstream_host if upstream_port is None else (upstream_host, upstream_port)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.tls: ssl.SSLContext | None = None
        self.ca_file: str | None = None
        if tls:
            self._dir = tempfile.TemporaryDirectory(prefix="bootfleet-wire-")
            cert, key = self_signed(Path(self._dir.name))
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(cert, key)
            self.ca_file = str(cert)
        self.sent: list[bytearray] = []  # one per client connection, in accept order
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.closed = True
        self.listener.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.tls is not None:
                try:
                    client = self.tls.wrap_socket(client, server_side=True)
                except (OSError, ssl.SSLError):
                    client.close()
                    continue
            upstream = self._connect_upstream()
            record = bytearray()
            with self.lock:
                self.sent.append(record)
            threading.Thread(target=self._pipe, args=(client, upstream, record), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, None), daemon=True).start()

    def _connect_upstream(self) -> socket.socket:
        if isinstance(self.upstream, str):
            upstream = socket.socket(socket.AF_UNIX)
            upstream.settimeout(30)
            upstream.connect(self.upstream)
        else:
            upstream = socket.create_connection(self.upstream, timeout=30)
        upstream.settimeout(None)  # the timeout is for connecting; a pooled connection may idle longer
        return upstream

    def _pipe(self, source: socket.socket, target: socket.socket, record: bytearray | None) -> None:
        try:
            while chunk := source.recv(65536):
                if record is not None:
                    with self.lock:
                        record.extend(chunk)
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, target):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def requests(self) -> list[tuple[str, dict[str, str], bytes]]:
        """Every HTTP/1.1 request the clients sent: request line, headers (lower-case
        names), and body (by Content-Length, or the raw chunked framing as sent)."""
        with self.lock:
            streams = [bytes(s) for s in self.sent]
        found = []
        for data in streams:
            while data:
                head, sep, rest = data.partition(b"\r\n\r\n")
                if not sep:
                    break
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                if "content-length" in headers:
                    size = int(headers["content-length"])
                    body, data = rest[:size], rest[size:]
                elif headers.get("transfer-encoding", "").lower() == "chunked":
                    end = rest.find(b"\r\n0\r\n")
                    tail = rest.find(b"\r\n\r\n", end + 5) if end >= 0 else -1
                    body, data = (rest[:tail + 4], rest[tail + 4:]) if tail >= 0 else (rest, b"")
                else:
                    body, data = b"", rest
                found.append((lines[0], headers, body))
        return found


def raw_http(port: int, *parts: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send `parts` to 127.0.0.1:port as they are (any framing, even a broken one), then read
    the answer: (status, headers with lower-case names, body). A server that closes while the
    request is still being sent (after answering early) is fine; one that does not answer in
    `timeout` seconds raises TimeoutError."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        try:
            for part in parts:
                conn.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        while True:
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
                if len(body) >= int(headers.get("content-length", "-1")) >= 0:
                    return int(lines[0].split()[1]), headers, body[:int(headers["content-length"])]
            try:
                chunk = conn.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                if sep:
                    return int(lines[0].split()[1]), headers, body
                raise ConnectionError(f"the server closed the connection without an answer: {data[:200]!r}")
            data += chunk
