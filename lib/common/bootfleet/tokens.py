"""Per-node HMAC tokens, enrolment secrets, and the operators' bearer token.

A node token is `<expiry>.<signature>`, the signature being
HMAC-SHA256(secret, "node:<node id>:<token version>:<expiry>"). It is bound to
the node and its token version, which counts installs: every boot answer that
opens an install bumps it, and so does a reinstall, which revokes every token
issued before. It expires at the install's time limit (BOOTFLEET_TOKEN_TTL), and
config and status accept it only while the install is open (web/nodeauth.py).
Nothing secret is ever put in a boot script but this token.

An enrolment secret is what a server bootfleet created proves itself with: a
fresh random string in its user data (the chain URL carries it), stored only as
its SHA-256. Boot compares digests, not secrets (db/boot.py): how long a comparison
takes could tell at most how much of the digest of the caller's own guess matches,
which says nothing about the secret (its 256 random bits are not guessable, and a
digest prefix does not lead back to a preimage).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time

from bootfleet.errors import TokenError

_EXPIRY = re.compile(r"[0-9]{1,12}")  # ASCII digits only (str.isdigit() takes "²"), and no huge ints
_SECRET = re.compile(r"[A-Za-z0-9_-]{16,128}")
API_TOKEN_PREFIX = "bft_"  # a scoped API token (web/access.py): bft_ and 256 random bits, stored as its SHA-256


def new_api_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_enrolment_secret() -> str:
    """A fresh per-server enrolment secret (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def is_secret_shaped(secret: str | None) -> bool:
    return bool(secret) and _SECRET.fullmatch(secret) is not None


def _sign(secret: str, node_id: str, version: int, expiry: int) -> str:
    message = f"node:{node_id}:{version}:{expiry}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue_node_token(secret: str, node_id: str, version: int, ttl: int, now: float | None = None) -> str:
    expiry = int((now if now is not None else time.time()) + ttl)
    return f"{expiry}.{_sign(secret, node_id, version, expiry)}"


def verify_node_token(secret: str, token: str | None, node_id: str, version: int, now: float | None = None) -> None:
    """Raises TokenError unless `token` is a live token for this node and version."""
    if not token:
        raise TokenError("a node token is required (?token=... or Authorization: Bearer ...)", 401)
    expiry_text, _, signature = token.partition(".")
    if not _EXPIRY.fullmatch(expiry_text) or not signature or not signature.isascii():
        raise TokenError("the node token is malformed", 403)
    expected = _sign(secret, node_id, version, int(expiry_text))
    if not hmac.compare_digest(expected, signature):
        raise TokenError("the node token is not valid for this node (revoked by a reinstall, or forged)", 403)
    if int(expiry_text) < (now if now is not None else time.time()):
        raise TokenError("the node token has expired; boot the node again for a new one", 403)


def verify_admin_token(expected: str | None, authorization: str | None) -> None:
    """Check an operator's `Authorization: Bearer <token>` header."""
    if not expected:
        raise TokenError("the operator API is disabled: BOOTFLEET_ADMIN_TOKEN is not set", 403)
    if not authorization:
        raise TokenError("missing Authorization: Bearer <admin token>", 401)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise TokenError("Authorization must be 'Bearer <admin token>'", 401)
    if not hmac.compare_digest(token.strip().encode(errors="replace"), expected.encode()):
        raise TokenError("the admin token is not valid", 403)
