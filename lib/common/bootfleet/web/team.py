"""Scoped API tokens and who the caller is (`/config/api/v1/...`; roles.py, web/access.py).

    GET    /whoami            the caller's token name and role (any token; the dashboard asks)
    GET    /tokens            every live token: name, role, created, last used, expiry (admin)
    POST   /tokens            {"name", "role", "expires_in"}: a new token, shown once (admin)
    DELETE /tokens/<name|id>  revoke it: it stops working at once (admin)
    GET    /audit             the audit log, newest first: ?since=&actor=&target=&limit=&offset= (viewer)
"""

from __future__ import annotations


from bootfleet.db import api_tokens, audit, get_database
from bootfleet.tokens import hash_secret, new_api_token
from bootfleet.web.access import authorize
from bootfleet.web.api import Routes, json_body, json_response, page, parse, since_cursor
from bootfleet.web.audit import note

routes = Routes()


@routes.route("/whoami", role="metrics")
def whoami(request):
    principal = authorize(request, "metrics")
    return json_response({"name": principal.name, "role": principal.role, "bootstrap": principal.bootstrap})


@routes.route("/tokens", role="admin")
def token_list(request):
    include = request.args.get("revoked", "").lower() in ("1", "true", "yes")
    with get_database().transaction() as tx:
        items = api_tokens.listing(tx, include_revoked=include)
    return json_response({"items": items, "total": len(items)})


@routes.route("/tokens", methods=("POST",), role="admin")
def token_create(request):
    from bootfleet.web.schemas import TokenIn

    body = parse(TokenIn, json_body(request))
    token = new_api_token()
    creator = authorize(request, "admin").name
    with get_database().transaction() as tx:
        row = api_tokens.create(tx, body.name, body.role, hash_secret(token), creator, body.expires_in)
        note(request, f"token/{row['name']}", None, {k: row[k] for k in ("name", "role", "expires_at")}, tx=tx)
    return json_response({**row, "token": token}, 201)


@routes.route("/tokens/<key>", methods=("DELETE",), role="admin")
def token_revoke(request, key):
    with get_database().transaction() as tx:
        row = api_tokens.revoke(tx, key)
        note(request, f"token/{row['name']}", {"revoked_at": None}, {"revoked_at": row["revoked_at"]}, tx=tx)
    return json_response(row)


@routes.route("/audit", role="viewer")
def audit_log(request):
    limit, offset = page(request, default=100, maximum=1000)
    after_id, since = since_cursor(request.args.get("since", ""), "entry")
    with get_database().transaction() as tx:
        items, total = audit.listing(tx, since=since, after_id=after_id, actor=request.args.get("actor") or None,
                                     target=request.args.get("target") or None, limit=limit, offset=offset)
    return json_response({"items": items, "total": total, "limit": limit, "offset": offset})
