"""Checking the token a node presents to config and status."""

from __future__ import annotations

import flask

from bootfleet.db import nodes
from bootfleet.db.connection import Transaction
from bootfleet.settings import Settings, get_settings
from bootfleet.tokens import verify_node_token


def presented_token(request: flask.Request, path_token: str | None = None) -> str | None:
    if path_token:
        return path_token
    if request.args.get("token"):
        return request.args["token"]
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value else None


def authenticate_node(tx: Transaction, request: flask.Request, node_id: str, path_token: str | None = None,
                      settings: Settings | None = None) -> dict:
    """The node, locked for update, if the request carries a valid token for it.

    401 without a token, 403 with a wrong one, 404 for an unknown node."""
    node = nodes.get(tx, node_id, lock=True)
    secret = (settings or get_settings()).require("token_secret")
    verify_node_token(secret, presented_token(request, path_token), node_id, node["token_version"])
    nodes.touch(tx, node_id)
    return node
