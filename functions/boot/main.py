"""boot: serves each machine its iPXE script.

GET /boot/boot.ipxe   the chainloader (DHCP with retries, then chain to /boot/ipxe)
GET /boot/ipxe        the node's script; ?mac=..&uuid=..&serial=..&hostname=..&arch=..&platform=..&secret=..
                      (secret: the enrolment secret of a server bootfleet created; docs/security.md)
GET /boot/whoami      the caller's address as bootfleet sees it and the hops skipped (bootfleet doctor)
"""

import logging
import re

from bootfleet import metrics
from bootfleet.boot import ipxe
from bootfleet.boot.answer import BootRequest, answer
from bootfleet.boot.trust import client, whoami
from bootfleet.db import get_database
from bootfleet.errors import BadRequestError, DatabaseUnavailableError, RenderError
from bootfleet.log import setup_logging
from bootfleet.settings import get_settings
from bootfleet.tokens import is_secret_shaped
from bootfleet.validation import check_hostname, check_serial, normalize_mac, normalize_uuid
from bootfleet.web.api import Api, base_url, json_response, text_response

setup_logging("boot")
log = logging.getLogger("bootfleet.boot")
api = Api("boot", errors="text")
_WORD = re.compile(r"^[A-Za-z0-9_-]{1,16}$")


def _parse(request) -> BootRequest:
    args = request.args
    macs = [normalize_mac(m) for m in args.getlist("mac") if m.strip()]
    uuid = args.get("uuid", "").strip()
    serial = args.get("serial", "").strip()
    hostname = args.get("hostname", "").strip()
    req = BootRequest(
        macs=list(dict.fromkeys(macs)),
        uuid=normalize_uuid(uuid) if uuid else None,
        serial=check_serial(serial) if serial else None,
        hostname=check_hostname(hostname) if hostname else None,
    )
    for name in ("arch", "platform"):
        value = args.get(name, "").strip()
        if value and not _WORD.fullmatch(value):
            raise BadRequestError(f"{name}: expected a short word like x86_64 or pcbios, got {value[:40]!r}")
        setattr(req, name, value or None)
    secret = args.get("secret", "").strip()
    if secret and not is_secret_shaped(secret):
        raise BadRequestError("secret: expected the enrolment secret from the server's user data (16-128 of A-Z a-z 0-9 _ -)")
    req.secret = secret or None
    if not req.macs and not req.uuid:
        raise BadRequestError("give the machine's mac (or uuid): /boot/ipxe?mac=${netX/mac}&uuid=${uuid}")
    return req


@api.route("/boot.ipxe")
def chainloader(request):
    return text_response(ipxe.chainloader(base_url(request), retry_seconds=10))


@api.route("/whoami")
def who_am_i(request):
    return json_response(whoami(request.remote_addr, request.headers, get_settings()))


@api.route("/ipxe")
def node_script(request):
    req = _parse(request)
    settings = get_settings()
    base = base_url(request)
    try:
        result = answer(get_database(), settings, base, req, client(request.remote_addr, request.headers, settings))
    except DatabaseUnavailableError as e:
        log.warning("database unavailable, telling the node to retry: %s", e, extra={"mac": req.macs})
        metrics.boot_answer("database-unavailable")
        message = "the boot service cannot reach its database"
        return text_response(ipxe.retry(message, ipxe.script_url(base, req.query()), settings.retry_seconds))
    except RenderError as e:
        log.error("cannot render boot script: %s", e, extra={"mac": req.macs})
        metrics.boot_answer("render-error")
        return text_response(f"boot: cannot render this node's boot script: {e}\n", 500)
    # Every answer but one: an installing node asking for its script again (a storm's repeats) only at DEBUG.
    level = logging.DEBUG if result.outcome == "install" and not result.changed else logging.INFO
    log.log(level, "boot script", extra={"mac": req.macs, "node_id": result.node_id, "outcome": result.outcome})
    metrics.boot_answer(result.outcome)
    return text_response(result.script)


def boot(request):
    return api(request)
