"""Signed webhooks: which URLs may receive them, how a delivery is signed, and sending what is due.

A delivery is a POST of a JSON body:

    {"id": "<delivery id>", "event": "node.ready", "created_at": "...", "data": {the event}}

with these headers (the convention of GitHub's `X-Hub-Signature-256`, "sha256=" and the hex
HMAC-SHA256 of the raw body keyed with the webhook's secret; docs/security.md):

    X-Bootfleet-Signature-256: sha256=<hex>
    X-Bootfleet-Delivery: <delivery id>      the same on every retry: a receiver drops repeats by it
    X-Bootfleet-Event: node.ready

Deliveries are written to the outbox (webhook_delivery) by a trigger, in the transaction that
writes the event (db/webhooks.py, migration 0012), so none is lost when a function dies. `send_due`
sends the due ones: cleanup runs it on every pass, and `bootfleet serve` every
BOOTFLEET_WEBHOOK_EVERY seconds (POST /cleanup/webhooks). A failed attempt (no answer, or not 2xx)
is retried after BOOTFLEET_WEBHOOK_BACKOFF seconds, doubling each time (up to an hour), until
BOOTFLEET_WEBHOOK_MAX_ATTEMPTS; each attempt is recorded (`bootfleet webhook deliveries`).

A webhook is a request bootfleet makes on an operator's behalf, so its URL must be on
BOOTFLEET_WEBHOOK_ALLOW (host names, `*.domain`, or CIDRs of IP addresses), checked when it is
registered and again before every attempt; redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import time
from urllib.parse import urlsplit

from bootfleet.db import webhooks
from bootfleet.db.connection import Database
from bootfleet.errors import BadRequestError
from bootfleet.settings import Settings

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Bootfleet-Signature-256"
DELIVERY_HEADER = "X-Bootfleet-Delivery"
EVENT_HEADER = "X-Bootfleet-Event"
MAX_BACKOFF = 3600
BATCH = 200  # deliveries sent per pass at most (the rest wait for the next)


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: sha256=<hex HMAC-SHA256 of the body>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_url(url: str, settings: Settings) -> str:
    """The URL, if a webhook may be sent there; a 400 that says why not otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise BadRequestError(f"url: an http(s) URL without user or password, got {url[:100]!r}")
    host = parts.hostname.lower().rstrip(".")
    allow = settings.webhook_allow
    if not allow:
        raise BadRequestError("url: no webhook may be sent anywhere until BOOTFLEET_WEBHOOK_ALLOW names the hosts"
                              " (or networks) that may receive them")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    for entry in allow:
        if isinstance(entry, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            if address is not None and address in entry:
                return url
        elif address is None and (host == entry or (entry.startswith("*.") and host.endswith(entry[1:]))):
            return url
    raise BadRequestError(f"url: {host} is not on BOOTFLEET_WEBHOOK_ALLOW ({', '.join(map(str, allow))})")


def backoff(attempts: int, settings: Settings) -> float | None:
    """Seconds until the next attempt after `attempts` failed ones; None: give up."""
    if attempts >= settings.webhook_max_attempts:
        return None
    return float(min(settings.webhook_backoff * 2 ** (attempts - 1), MAX_BACKOFF))


def body_of(delivery: dict) -> bytes:
    payload = delivery["payload"]
    if isinstance(payload, str):
        payload = json.loads(payload)
    return json.dumps({"id": delivery["id"], "event": delivery["event"], "created_at": payload.get("created_at"),
                       "data": payload}, separators=(",", ":"), sort_keys=True).encode()


def send_due(database: Database, settings: Settings, dry_run: bool = False) -> dict[str, int]:
    """Send the deliveries that are due; {"sent", "failed", "given_up"} (dry run: {"due"})."""
    if dry_run:
        with database.transaction() as tx:
            due = webhooks.count_due(tx)
        return {"due": due} if due else {}
    import requests

    counts = {"sent": 0, "failed": 0, "given_up": 0}
    with database.transaction() as tx:
        due = webhooks.claim_due(tx, BATCH, lease_seconds=settings.webhook_timeout * 2 + 30)
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment: the allow-list is the whole story
    for delivery in due:
        body = body_of(delivery)
        status, error, started = None, None, time.monotonic()
        try:
            check_url(delivery["url"], settings)
            resp = session.post(delivery["url"], data=body, timeout=settings.webhook_timeout, allow_redirects=False,
                                headers={"Content-Type": "application/json", "User-Agent": "bootfleet-webhook",
                                         SIGNATURE_HEADER: sign(delivery["secret"], body),
                                         DELIVERY_HEADER: delivery["id"], EVENT_HEADER: delivery["event"]})
            status = resp.status_code
            if not 200 <= status < 300:
                error = f"the receiver answered {status}"
        except BadRequestError as e:
            error = f"refused: {e.message}"
        except requests.RequestException as e:
            error = f"{type(e).__name__}: {str(e)[:300]}"
        ok = error is None
        retry = None if ok else backoff(delivery["attempts"] + 1, settings)
        with database.transaction() as tx:
            webhooks.attempted(tx, delivery["id"], status, error, int((time.monotonic() - started) * 1000), ok, retry)
        if ok:
            counts["sent"] += 1
        elif retry is None:
            counts["given_up"] += 1
            log.warning("webhook delivery given up", extra={"webhook": delivery["webhook"], "delivery": delivery["id"],
                                                            "error": error})
        else:
            counts["failed"] += 1
    return {k: v for k, v in counts.items() if v}
