"""Events: the append-only history of nodes and deployments."""

from __future__ import annotations

from typing import Any

from bootfleet.db.connection import Transaction


def add(
    tx: Transaction,
    kind: str,
    message: str,
    source: str,
    node_id: str | None = None,
    deployment_id: str | None = None,
    stage: str | None = None,
) -> None:
    tx.run(
        "INSERT INTO event (node_id, deployment_id, stage, kind, message, source)"
        " VALUES (:node_id, :deployment_id, :stage, :kind, :message, :source)",
        node_id=node_id,
        deployment_id=deployment_id,
        stage=stage,
        kind=kind,
        message=message[:2000],
        source=source,
    )


def listing(
    tx: Transaction,
    after_id: int = 0,
    since: Any = None,
    node_id: str | None = None,
    deployment_id: str | None = None,
    limit: int = 500,
    newest_first: bool = False,
) -> list[dict]:
    """Events after `after_id` (and `since`), oldest first; `newest_first`: the newest `limit`, newest first.
    Each with its node's `hostname`."""
    where, params = ["e.id > :after_id"], {"after_id": after_id, "limit": limit}
    if since is not None:
        where.append("e.created_at > :since")
        params["since"] = since
    if node_id:
        where.append("e.node_id = :node_id")
        params["node_id"] = node_id
    if deployment_id:
        where.append("e.deployment_id = :deployment_id")
        params["deployment_id"] = deployment_id
    order = "e.id DESC" if newest_first else "e.id"
    # `hostname`: the node's now (null for a node removed since), so readers name nodes as operators do.
    return tx.all(f"SELECT e.*, n.hostname FROM event e LEFT JOIN node n ON n.id = e.node_id"
                  f" WHERE {' AND '.join(where)} ORDER BY {order} LIMIT :limit", **params)


def count_before(tx: Transaction, days: int) -> int:
    return tx.scalar("SELECT count(*) FROM event WHERE created_at < now() - make_interval(days => :d)", d=days)


def prune_before(tx: Transaction, days: int, batch: int) -> int:
    """Delete up to `batch` events older than `days`; returns how many went."""
    return len(tx.all(
        "DELETE FROM event WHERE id IN (SELECT id FROM event"
        " WHERE created_at < now() - make_interval(days => :d) ORDER BY id LIMIT :n) RETURNING id",
        d=days, n=batch,
    ))
