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


def selected_by(tx: Transaction, profile: dict, most: int = 10) -> tuple[int, list[str]]:
    """How many live nodes boot `profile` by their labels (no profile and no deployment of their
    own, labels it selects, and no more specific profile selecting them), and the first `most`
    of their hostnames (or ids)."""
    if not profile.get("selectors"):
        return 0, []
    rows_ = tx.all(
        "SELECT COALESCE(n.hostname, n.id::text) AS name, count(*) OVER () AS total FROM node n"
        " WHERE n.stage <> 'deleted' AND n.profile_id IS NULL AND n.deployment_id IS NULL"
        " AND (SELECT p.id FROM profile p WHERE p.selectors <> '{}'::jsonb AND p.selectors <@ n.labels"
        "      ORDER BY (SELECT count(*) FROM jsonb_object_keys(p.selectors)) DESC, p.name LIMIT 1) = :id"
        " ORDER BY 1 LIMIT :most",
        id=profile["id"], most=most,
    )
    return (rows_[0]["total"] if rows_ else 0), [r["name"] for r in rows_]


def delete(tx: Transaction, key: str, force: bool = False) -> dict:
    """Delete a profile: a 409 while deployments or nodes name it, and while nodes boot it by
    their labels (unless `force`: those nodes then boot what else their labels select, or nothing)."""
    profile = get(tx, key)
    if not force:
        count, names = selected_by(tx, profile)
        if count:
            more = f" and {count - len(names)} more" if count > len(names) else ""
            raise ConflictError(f"profile {profile['name']!r} is what {count} node(s) boot by their labels"
                                f" ({', '.join(names)}{more}); deleting it leaves them with another profile their"
                                " labels select, or none: give force (bootfleet profile delete --force) to go on")
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
