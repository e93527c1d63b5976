"""Signed webhooks (`/config/api/v1/webhooks`; bootfleet/notify.py):

    GET    /webhooks                    every webhook (never its secret) and its pending deliveries (viewer)
    POST   /webhooks                    {"name", "url", "events", "secret"?}: the secret shown once (admin)
    GET    /webhooks/<name|id>          one (viewer)
    PATCH  /webhooks/<name|id>          {"url", "events", "active"} (admin)
    DELETE /webhooks/<name|id>          it and its deliveries (admin)
    GET    /webhooks/<name|id>/deliveries?limit=   the newest deliveries, each with every attempt (viewer)

Webhooks need an admin token to change: each is a request bootfleet makes to a URL on an operator's
behalf, and carries the fleet's events out.
"""

from __future__ import annotations

import secrets

from bootfleet.db import get_database, webhooks as webhook_rows
from bootfleet.settings import get_settings
from bootfleet.web.api import Routes, json_body, json_response, parse, whole_number
from bootfleet.web.audit import note
from bootfleet.notify import check_url

routes = Routes()


@routes.route("/webhooks", role="viewer")
def webhook_list(request):
    with get_database().transaction() as tx:
        items = webhook_rows.listing(tx)
    return json_response({"items": items, "total": len(items)})


@routes.route("/webhooks", methods=("POST",), role="admin")
def webhook_create(request):
    from bootfleet.web.schemas import WebhookIn

    body = parse(WebhookIn, json_body(request))
    url = check_url(body.url, get_settings())
    secret = body.secret or secrets.token_urlsafe(32)
    with get_database().transaction() as tx:
        hook = webhook_rows.create(tx, body.name, url, list(dict.fromkeys(body.events)), secret)
        note(request, f"webhook/{hook['name']}", None, {k: hook[k] for k in ("name", "url", "events")}, tx=tx)
    return json_response({**hook, "secret": secret}, 201)


@routes.route("/webhooks/<key>", role="viewer")
def webhook_get(request, key):
    with get_database().transaction() as tx:
        return json_response(webhook_rows.get(tx, key))


@routes.route("/webhooks/<key>", methods=("PATCH", "PUT"), role="admin")
def webhook_update(request, key):
    from bootfleet.web.schemas import WebhookUpdate

    changes = parse(WebhookUpdate, json_body(request)).model_dump(exclude_none=True)
    if "url" in changes:
        check_url(changes["url"], get_settings())
    if "events" in changes:
        changes["events"] = list(dict.fromkeys(changes["events"]))
    with get_database().transaction() as tx:
        before = webhook_rows.get(tx, key)
        hook = webhook_rows.update(tx, key, changes)
        note(request, f"webhook/{before['name']}", before, hook, fields=("url", "events", "active"), tx=tx)
    return json_response(hook)


@routes.route("/webhooks/<key>", methods=("DELETE",), role="admin")
def webhook_delete(request, key):
    with get_database().transaction() as tx:
        hook = webhook_rows.delete(tx, key)
        note(request, f"webhook/{hook['name']}", {k: hook[k] for k in ("url", "events")}, {}, tx=tx)
    return json_response(None, 204)


@routes.route("/webhooks/<key>/deliveries", role="viewer")
def webhook_deliveries(request, key):
    limit = whole_number(request.args.get("limit"), "limit", 50, 1, 1000)
    with get_database().transaction() as tx:
        hook = webhook_rows.get(tx, key)
        items = webhook_rows.deliveries(tx, hook["id"], limit)
    return json_response({"webhook": hook["name"], "items": items})
