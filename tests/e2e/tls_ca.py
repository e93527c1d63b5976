"""A throwaway certificate authority for the HTTPS e2e, and the server certificates it signs.

The CA lives in the e2e cache (its key too: it signs nothing but test certificates for
10.0.2.100), because the iPXE that trusts it is built with it (ipxe_source.py) and that
build is cached; a new CA on every run would mean a new iPXE build on every run.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

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
