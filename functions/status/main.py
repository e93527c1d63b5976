"""status: nodes report their progress; operators watch deployments.

Nodes (their token):
  POST /status/nodes/<id>/progress     {"stage": "...", "message": "..."}, a cloud-init phone_home form,
                                       or a cloud-init/curtin webhook reporter event (docs/installers.md)
  POST /status/nodes/<id>/inventory    its hardware (bootfleet/inventory.py, docs/images.md); answers
                                       whether its profile's requirements pass
  GET  /status/nodes/<id>/image-plan   an image profile's plan for the agent (boot/image_plan.py)
Operators (admin token):
  GET  /status/deployments/<id or name>   counts per stage, percent done, failed and stuck nodes
  GET  /status/standalone                 the same for the nodes outside every deployment
  GET  /status/nodes/<id>                 the node
  GET  /status/nodes/<id>/events          its history
  GET  /status/events?since=<event id or ISO time>&deployment=&node=&limit=&order=asc|desc
"""

import logging
from dataclasses import dataclass

from bootfleet.boot import progress
from bootfleet.db import deployments, events, get_database, nodes
from bootfleet.errors import BadRequestError
from bootfleet.log import setup_logging
from bootfleet.settings import get_settings
from bootfleet.web.api import MAX_BIGINT, Api, json_body, json_response, since_cursor, whole_number
from bootfleet.web.nodeauth import authenticate_node
from bootfleet.web.views import node_view

setup_logging("status")
log = logging.getLogger("bootfleet.status")
api = Api("status", cors=True)
PHONE_HOME_FIELDS = ("hostname", "fqdn", "instance_id")


@dataclass
class Report:
    """A node's progress report. Checked here rather than with a pydantic model (web/schemas.py):
    two plain fields, and status's cold start stays without pydantic."""

    stage: str
    message: str
    bytes: int | None = None  # issue 22: an image write's progress (with `total`), stored on the node
    total: int | None = None


@dataclass
class ReporterEvent:
    """One event of cloud-init's or curtin's webhook reporter (boot/progress.py has the format)."""

    fields: dict


def _text(data: dict, field: str, limit: int, required: bool = False) -> str:
    value = data.get(field)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise BadRequestError(f"{field}: {'required, ' if required else ''}text (a webhook reporter event's {field})")
    return value[:limit]  # an installer's own text: kept, cut to fit, never refused for its length


def _reporter_event(data: dict) -> ReporterEvent:
    result = data.get("result")
    if result is not None and result not in progress.REPORTER_RESULTS:
        raise BadRequestError(f"result: one of {', '.join(progress.REPORTER_RESULTS)} (a webhook reporter event's"
                              f" result), got {str(result)[:20]!r}")
    return ReporterEvent({"event_type": _text(data, "event_type", 32, required=True),
                          "name": _text(data, "name", 200, required=True),
                          "description": _text(data, "description", 1000), "origin": _text(data, "origin", 32),
                          "result": result})


def _report_body(request) -> Report | ReporterEvent:
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = request.form
        data = {"stage": form.get("stage") or request.args.get("stage", ""), "message": form.get("message", "")}
        if not data["message"]:
            seen = [f"{k}={form[k]}" for k in PHONE_HOME_FIELDS if form.get(k)]
            data["message"] = "phone_home" + (f": {' '.join(seen)}" if seen else "")
    else:
        data = json_body(request)
        if "stage" not in data and "event_type" in data:
            return _reporter_event(data)
        if "stage" not in data and request.args.get("stage"):
            data["stage"] = request.args["stage"]
    stage, message = data.get("stage"), data.get("message", "")
    if not stage:
        raise BadRequestError("stage: required (in the body, or ?stage= for cloud-init phone_home)")
    if not isinstance(stage, str) or len(stage) > 32:
        raise BadRequestError("stage: a stage name of at most 32 characters, such as installing or ready")
    if not isinstance(message, str) or len(message) > 2000:
        raise BadRequestError("message: text of at most 2000 characters")
    return Report(stage, message, *_write_progress(data))


def _write_progress(data: dict) -> tuple[int | None, int | None]:
    """Issue 22: optional `bytes` and `total` of an image write (whole numbers, bytes <= total)."""
    done, total = data.get("bytes"), data.get("total")
    for name, value in (("bytes", done), ("total", total)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_BIGINT):
            raise BadRequestError(f"{name}: a whole number of bytes from 0")
    if total is not None and (done is None or done > total):
        raise BadRequestError("bytes: required with total, and at most total")
    return done, total


@api.route("/nodes/<node_id>/progress", methods=("POST",))
def node_progress(request, node_id):
    with get_database().transaction() as tx:
        # First: nothing of the body is read before. Seen: with the move, or below.
        node = authenticate_node(tx, request, node_id, touch=False)
        body = _report_body(request)
        if isinstance(body, ReporterEvent):
            moved = progress.reporter_event(tx, get_settings(), node, body.fields)
            stage = nodes.get(tx, node_id)["stage"] if moved else node["stage"]
            nodes.touch(tx, node_id)
        else:
            moved = progress.report(tx, get_settings(), node, body.stage, body.message, seen=True)
            stage = body.stage if moved else node["stage"]
            if body.bytes is not None:  # issue 22: the image write's progress, even on a repeated stage
                from bootfleet.db.inventory import set_progress
                set_progress(tx, node_id, body.bytes, body.total)  # sets last_seen too
            elif not moved:
                nodes.touch(tx, node_id)
    log.info("progress", extra={"node_id": node_id, "stage": stage, "moved": moved})
    return json_response({"node": node_id, "stage": stage, "changed": moved})


@api.route("/nodes/<node_id>/inventory", methods=("POST",))
def node_inventory(request, node_id):
    """Issue 22: the node's hardware, stored and checked against its profile's requirements."""
    from bootfleet import inventory
    from bootfleet.boot import requirements

    with get_database().transaction() as tx:
        node = authenticate_node(tx, request, node_id)  # first: nothing of the body is read before
        checked = requirements.report(tx, node, inventory.check(json_body(request)))
    log.info("inventory", extra={"node_id": node_id, "passed": checked["passed"]})
    return json_response({"node": node_id, **checked})


@api.route("/nodes/<node_id>/image-plan")
def node_image_plan(request, node_id):
    """Issue 22: what the bootfleet agent writes to which disk (boot/image_plan.py), as key=value lines."""
    from bootfleet.boot import image_plan
    from bootfleet.web.api import base_url, text_response
    from bootfleet.web.nodeauth import presented_token

    with get_database().transaction() as tx:
        node = authenticate_node(tx, request, node_id)
        text = image_plan.plan(tx, get_settings(), node, base_url(request), presented_token(request))
    return text_response(text)


@api.route("/deployments/<key>", admin=True)
def deployment_status(request, key):
    with get_database().transaction() as tx:
        deployment = deployments.get(tx, key)
        return json_response(progress.deployment_progress(tx, deployment, get_settings().stage_timeouts))


@api.route("/standalone", admin=True)
def standalone_status(request):
    """The nodes outside every deployment, summarised as a deployment is (failed, stuck)."""
    with get_database().transaction() as tx:
        return json_response(progress.standalone_progress(tx, get_settings().stage_timeouts))


@api.route("/nodes/<node_id>", admin=True)
def node_status(request, node_id):
    with get_database().transaction() as tx:
        return json_response(node_view(nodes.get(tx, node_id)))


@api.route("/nodes/<node_id>/events", admin=True)
def node_events(request, node_id):
    with get_database().transaction() as tx:
        nodes.get(tx, node_id)
        items = events.listing(tx, node_id=node_id, limit=_limit(request))
    return json_response({"events": items})


def _limit(request) -> int:
    return whole_number(request.args.get("limit"), "limit", 500, 1, 5000)


@api.route("/events", admin=True)
def event_feed(request):
    after_id, since = since_cursor(request.args.get("since", ""), "event")
    limit = _limit(request)
    order = request.args.get("order", "asc")
    if order not in ("asc", "desc"):
        raise BadRequestError(f"order: asc (oldest first, the default) or desc (the newest first), got {order[:20]!r}")
    with get_database().transaction() as tx:
        deployment_id = node_id = None
        if request.args.get("deployment"):
            deployment_id = deployments.get(tx, request.args["deployment"])["id"]
        if request.args.get("node"):
            node_id = nodes.resolve(tx, request.args["node"])["id"]
        items = events.listing(tx, after_id=after_id, since=since, deployment_id=deployment_id, node_id=node_id,
                               limit=limit, newest_first=order == "desc")
    last = max((e["id"] for e in items), default=after_id)
    return json_response({"events": items, "next": last})


def status(request):
    return api(request)
