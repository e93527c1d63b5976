"""cleanup: scheduled (a Code Engine cron subscription), or run by hand.

POST /cleanup/run[?dry_run=true]   an operator or admin token, or BOOTFLEET_CRON_SECRET as the bearer
                                   token or as {"secret": "..."} in the body
POST /cleanup/webhooks             the same tokens: send the webhook deliveries that are due, nothing else
                                   (bootfleet serve calls it every BOOTFLEET_WEBHOOK_EVERY seconds)
"""

import hmac
import json
import logging

from bootfleet import metrics, notify
from bootfleet.cleanup import Cleanup, CleanupBusyError
from bootfleet.db import get_database
from bootfleet.errors import BadRequestError, TokenError, UnauthorizedError
from bootfleet.log import setup_logging
from bootfleet.providers.dns.choose import make_provider
from bootfleet.provision.fleet import Fleet
from bootfleet.settings import get_settings
from bootfleet.web.access import authorize
from bootfleet.web.api import Api, json_response

setup_logging("cleanup")
log = logging.getLogger("bootfleet.cleanup")
api = Api("cleanup")


def _authorize(request) -> None:
    """The cron subscription cannot send custom headers, so its secret may come in the body."""
    secret = get_settings().cron_secret
    if secret:
        presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not presented:
            try:
                presented = (json.loads(request.get_data() or b"{}") or {}).get("secret", "")
            except (ValueError, AttributeError, RecursionError):  # not JSON, not an object
                presented = ""
        # Only a string can be the secret (a number, a list or a lone surrogate is not).
        presented = presented.encode("utf-8", "replace") if isinstance(presented, str) else b""
        if presented and hmac.compare_digest(presented, secret.encode()):
            return
    try:
        authorize(request, "operator")
    except TokenError as e:
        if e.status == 401:
            raise UnauthorizedError("missing Authorization: Bearer <admin token or cron secret>") from None
        raise


def _dry_run(request) -> bool:
    raw = request.args.get("dry_run", "false").lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise BadRequestError(f"dry_run: true or false, got {raw[:20]!r}")
    return raw in ("true", "1", "yes")


@api.route("/run", methods=("POST",))
def run(request):
    _authorize(request)
    settings = get_settings()
    dry_run = _dry_run(request)
    try:
        summary = Cleanup(get_database(), settings, Fleet(settings), make_provider(settings), dry_run=dry_run).run()
    except CleanupBusyError:
        metrics.cleanup_run("busy", dry_run)
        raise
    except Exception:
        metrics.cleanup_run("failed", dry_run)
        raise
    metrics.cleanup_run("errors" if summary["errors"] else "ok", dry_run)
    return json_response(summary)


@api.route("/webhooks", methods=("POST",))
def send_webhooks(request):
    _authorize(request)
    return json_response({"counts": notify.send_due(get_database(), get_settings())})


def cleanup(request):
    return api(request)
