"""Profiles: what a node boots (kernel, initrds, args) and the config template it gets."""

from __future__ import annotations

import json

import pg8000.exceptions

from bootfleet.db import rows
from bootfleet.db.connection import Transaction
from bootfleet.errors import ConflictError


def get(tx: Transaction, key: str) -> dict:
    return rows.by_id_or_name(tx, "profile", key, "profile")


def listing(tx: Transaction, limit: int, offset: int) -> tuple[list[dict], int]:
    return rows.page(tx, "SELECT * FROM profile", "profile", "", "name", limit, offset)


def create(tx: Transaction, fields: dict) -> dict:
    return rows.insert(tx, "profile", fields, f"profile {fields.get('name')!r}")


def update(tx: Transaction, key: str, fields: dict) -> dict:
    profile = get(tx, key)
    if not fields:
        return profile
    return rows.update(tx, "profile", profile["id"], fields, "profile")


def delete(tx: Transaction, key: str) -> dict:
    profile = get(tx, key)
    users = tx.scalar(
        "SELECT (SELECT count(*) FROM deployment WHERE profile_id = :id AND state <> 'deleted')"
        " + (SELECT count(*) FROM node WHERE profile_id = :id)",
        id=profile["id"],
    )
    if users:
        raise ConflictError(f"profile {profile['name']!r} is used by {users} deployment(s) or node(s); move them first")
    try:
        tx.run("DELETE FROM profile WHERE id = :id", id=profile["id"])
    except pg8000.exceptions.DatabaseError as e:
        raise ConflictError(f"profile {profile['name']!r} is still referred to by deleted deployments") from e
    return profile


def for_labels(tx: Transaction, labels: dict) -> dict | None:
    """The profile whose selectors all match these labels; the most specific wins."""
    return tx.one(
        "SELECT * FROM profile WHERE selectors <> '{}'::jsonb AND selectors <@ CAST(:labels AS jsonb)"
        " ORDER BY (SELECT count(*) FROM jsonb_object_keys(selectors)) DESC, name LIMIT 1",
        labels=json.dumps(labels),
    )


def find(tx: Transaction, name: str) -> dict | None:
    """The profile with this name, or None."""
    return tx.one("SELECT * FROM profile WHERE name = :name", name=name)
