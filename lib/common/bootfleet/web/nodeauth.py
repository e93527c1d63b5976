"""Checking the token a node presents to config and status."""

from __future__ import annotations

import flask

from bootfleet.db import nodes
from bootfleet.db.connection import Transaction
from bootfleet.errors import TokenError
from bootfleet.settings import Settings, get_settings
from bootfleet.stages import INSTALL_OPEN
from bootfleet.tokens import verify_node_token


def presented_token(request: flask.Request, path_token: str | None = None) -> str | None:
    if path_token:
        return path_token
    if request.args.get("token"):
        return request.args["token"]
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value else None


def authenticate_node(tx: Transaction, request: flask.Request, node_id: str, path_token: str | None = None,
                      settings: Settings | None = None, touch: bool = True) -> dict:
    """The node, locked for update, if the request carries a valid token for it and the
    install that token was issued for is still open; seen now (`touch`; False: the caller
    sets last_seen itself, with the change it makes anyway: a round trip fewer).

    401 without a token, 403 with a wrong, expired or closed-install one, 404 for an
    unknown node."""
    node = nodes.get(tx, node_id, lock=True)
    secret = (settings or get_settings()).require("token_secret")
    verify_node_token(secret, presented_token(request, path_token), node_id, node["token_version"])
    if node["stage"] not in INSTALL_OPEN:
        raise TokenError(f"the install this token was issued for is closed (node is {node['stage']});"
                         " a node token works only from its boot answer until ready or failed", 403)
    if touch:
        nodes.touch(tx, node_id)
    return node
