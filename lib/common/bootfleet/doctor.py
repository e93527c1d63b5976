"""`bootfleet doctor`, the server's half: is everything this installation uses in place?

Each check is {"name", "ok", "detail"}; the CLI adds its own (the gateway reachable from
where the operator is, the two clocks) and prints them all.
"""

from __future__ import annotations

from bootfleet.db import deployments, profiles
from bootfleet.db.connection import Database
from bootfleet.db.migrate import pending
from bootfleet.errors import BootfleetError
from bootfleet.providers.storage.choose import missing_images
from bootfleet.settings import Settings

MAX_SKEW = 5.0  # seconds between this server's clock and the database's that tokens and timeouts tolerate


def _check(name: str, ok: bool, detail: str) -> dict:
    return {"name": name, "ok": ok, "detail": detail}


def client_address_check(seen: dict) -> dict:
    """What GET /boot/whoami answered the operator's machine. Through the gateway a client is
    never at an internal address: if it seems to be, the gateway took one of Code Engine's
    own hops for the client, and every node will too (docs/security.md)."""
    address = seen.get("address") or "no address"
    skipped = ", ".join(seen.get("skipped") or []) or "none"
    where = "inside BOOTFLEET_BOOT_NETWORKS" if seen.get("boot_network") else "not in BOOTFLEET_BOOT_NETWORKS"
    if seen.get("via") == "gateway" and seen.get("looks_internal"):
        return _check("client address", False,
                      f"bootfleet sees this machine as {address}, an internal address (hops skipped: {skipped});"
                      " the gateway takes one of Code Engine's own hops for the client: add its range to the"
                      " Terraform variable gateway_trusted_hops and apply (docs/deployment.md, first apply)")
    return _check("client address", True,
                  f"bootfleet sees this machine as {address} via the {seen.get('via')} ({where};"
                  f" hops skipped: {skipped})")


def server_checks(database: Database, settings: Settings) -> list[dict]:
    try:
        database.ping()
        waiting = pending(database)
    except BootfleetError as e:
        return [_check("database", False, f"cannot reach the database: {e.public}")]
    checks = [_check("database", True, "reachable"),
              _check("migrations", not waiting,
                     f"not applied: {', '.join(waiting)} (bootfleet migrate)" if waiting else "all applied")]
    with database.transaction() as tx:
        items, _ = profiles.listing(tx, 1000, 0)
        used = deployments.in_use(tx)
        skew = deployments.clock_skew(tx)
    checks.append(_check("clock", abs(skew) <= MAX_SKEW,
                         f"the database's clock is {skew:+.1f} s from the server's (at most {MAX_SKEW:.0f} s)"))
    checks += _image_checks(settings, items)
    checks += _provider_checks(settings, used)
    return checks


def _image_checks(settings: Settings, items: list[dict]) -> list[dict]:
    if not items:
        return [_check("images", True, "no profiles yet")]
    checks = []
    for profile in items:
        try:
            missing = missing_images(settings, [profile["kernel"], *profile["initrds"]], fresh=True)
        except BootfleetError as e:
            checks.append(_check(f"images of {profile['name']}", False, f"cannot read the storage: {e.public}"))
            continue
        detail = (f"missing in storage: {', '.join(missing)} (bootfleet images upload ...)" if missing
                  else "kernel and initrds present")
        checks.append(_check(f"images of {profile['name']}", not missing, detail))
    return checks


def _provider_checks(settings: Settings, used: list[dict]) -> list[dict]:
    providers = {row["provider"] for row in used}
    zoned = sum(row["n"] for row in used if row["zoned"])
    checks = []
    if "ibm" in providers:
        checks.append(_check("provider ibm", bool(settings.ibmcloud_api_key),
                             "API key set" if settings.ibmcloud_api_key else "BOOTFLEET_IBMCLOUD_API_KEY is not set"))
    if "local" in providers:
        from bootfleet.providers.vpc.qemu import QemuUnavailableError, find_tools

        try:
            find_tools()
            checks.append(_check("provider local", True, "QEMU, iPXE and busybox found"))
        except QemuUnavailableError as e:
            checks.append(_check("provider local", False, str(e)))
    if zoned:
        checks.append(_dns_check(settings, zoned))
    if not checks:
        checks.append(_check("providers", True, "no deployment uses a provider or a DNS zone"))
    return checks


def _dns_check(settings: Settings, zoned: int) -> dict:
    needs = {"ibm": ("ibmcloud_api_key", "ibm_dns_instance_id"), "rfc2136": ("dns_server",)}
    provider = settings.dns_provider
    if provider not in needs:
        return _check("dns", False, f"{zoned} deployment(s) have a DNS zone but BOOTFLEET_DNS_PROVIDER is {provider}")
    unset = [f"BOOTFLEET_{name.upper()}" for name in needs[provider] if not getattr(settings, name)]
    return _check("dns", not unset, f"{provider}: " + (f"not set: {', '.join(unset)}" if unset else "settings present"))


# --- the domain's certificate, as iPXE will meet it (the CLI runs this against the public URL) ---

# What Debian 13's iPXE (1.21.1+git20250501) offers that Code Engine accepts: TLS 1.2 with ECDHE-RSA
# and AES-GCM (iPXE src/crypto/mishmash/ecdhe_rsa_aes_gcm_sha256.c, _sha384.c; Code Engine:
# security.md#secure-cipher-suites). iPXE speaks TLS 1.2 at most (src/include/ipxe/tls.h:51, TLS_VERSION_MAX).
IPXE_HANDSHAKE = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"
# The key's algorithm in the leaf certificate's SubjectPublicKeyInfo, as DER-encoded OIDs: only the
# SPKI names these two (signature algorithms are ecdsa-with-SHA*, *WithRSAEncryption, other OIDs).
KEY_OIDS = {"ECDSA": bytes.fromhex("06072a8648ce3d0201"),  # id-ecPublicKey, 1.2.840.10045.2.1
            "RSA": bytes.fromhex("06092a864886f70d010101")}  # rsaEncryption, 1.2.840.113549.1.1.1


def certificate_key_type(der: bytes) -> str:
    """"RSA", "ECDSA", or "other" for a DER certificate."""
    return next((name for name, oid in KEY_OIDS.items() if oid in der), "other")


def certificate_check(url: str, timeout: float = 10, cafile: str | None = None) -> dict | None:
    """Connect to an https `url` as a node's iPXE will: the certificate's key must be RSA (iPXE
    before v2.0.0 has no ECDHE-ECDSA suite: commit 5aab6b7a3, 2025-12-19) and the server must
    take TLS 1.2 with ECDHE-RSA and AES-GCM. None for an http URL (nothing to check)."""
    import socket
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return None
    host, port = parts.hostname, parts.port or 443
    name = "certificate"

    def connect(context: ssl.SSLContext) -> tuple[bytes, str]:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            return tls.getpeercert(binary_form=True), tls.cipher()[0]

    looser = ssl.create_default_context()  # any suite, only to read the certificate
    looser.check_hostname, looser.verify_mode = False, ssl.CERT_NONE
    looser.set_ciphers("ALL:@SECLEVEL=0")
    try:
        der, _ = connect(looser)
    except (OSError, ssl.SSLError) as e:
        return _check(name, False, f"cannot connect to {host}:{port} over TLS: {e}")
    key = certificate_key_type(der)
    if key != "RSA":
        return _check(name, False, f"{host} serves a certificate with an {key} key: Debian 13's iPXE "
                      "(1.21.1+git20250501) and every iPXE before v2.0.0 have no ECDHE-ECDSA cipher suite and cannot "
                      "connect; get an RSA certificate (certbot --key-type rsa) or boot iPXE v2.0.0 or later "
                      "(docs/vpc.md)")
    ipxe_like = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ipxe_like.check_hostname, ipxe_like.verify_mode = False, ssl.CERT_NONE
    ipxe_like.minimum_version = ipxe_like.maximum_version = ssl.TLSVersion.TLSv1_2
    ipxe_like.set_ciphers(IPXE_HANDSHAKE)
    try:
        _, cipher = connect(ipxe_like)
    except (OSError, ssl.SSLError) as e:
        return _check(name, False, f"{host} refuses TLS 1.2 with {IPXE_HANDSHAKE.replace(':', ' or ')}, all iPXE "
                      f"has that Code Engine also accepts: {e}")
    trusted = ssl.create_default_context(cafile=cafile)
    try:
        connect(trusted)
        trust = "trusted by this machine's CAs (iPXE: docs/vpc.md, \"What a node reaches at boot\")"
    except ssl.SSLCertVerificationError as e:
        trust = (f"NOT trusted by this machine's CAs ({e.verify_message}): nodes need an iPXE built to trust its CA "
                 "(build-ipxe-disk --trust-ca, docs/vpc.md)")
    except (OSError, ssl.SSLError) as e:
        trust = f"not verified: {e}"
    return _check(name, True, f"{host}: RSA key, iPXE's handshake gets {cipher}; {trust}")


def profile_render_checks(database: Database, settings: Settings, base: str) -> list[dict]:
    """Each profile's kernel args and config rendered for one of the nodes it boots (or, with
    none, for a sample node: boot/render.sample_context), with a token of that node's install:
    a template error shows here before a machine meets it (docs/installers.md)."""
    from bootfleet.boot.node_config import images_for
    from bootfleet.boot.render import node_context, render_profile, sample_context
    from bootfleet.db import nodes
    from bootfleet.errors import RenderError
    from bootfleet.tokens import issue_node_token

    checks = []
    with database.transaction() as tx:
        items, _ = profiles.listing(tx, 1000, 0)
        for profile in items:
            node = nodes.one_booting(tx, profile)
            images = images_for(settings, base)
            if node is None:
                context, who = sample_context(profile, images), "a sample node (no node boots it)"
            else:
                _, deployment = nodes.boot_plan(tx, node)
                token = issue_node_token(settings.require("token_secret"), node["id"], node["token_version"], 60)
                context = node_context(node, profile, deployment, base, token, images)
                who = f"node {node.get('hostname') or node['id']}"
            try:
                render_profile(profile, context)
            except RenderError as e:
                checks.append(_check(f"templates of {profile['name']}", False, f"rendered for {who}: {e.message}"))
                continue
            what = "args and config" if profile["config_format"] != "none" else "args"
            checks.append(_check(f"templates of {profile['name']}", True, f"{what} render for {who}"))
    return checks
