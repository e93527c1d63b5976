"""Figures read at metrics scrape time (bootfleet.metrics.NodeStages)."""

from __future__ import annotations

import json

from bootfleet.db.connection import Transaction


def node_stages(tx: Transaction, timeouts: dict[str, int]) -> list[dict]:
    """Per stage: how many nodes, the longest time one has been in it (seconds), and how many
    are past the stage's timeout (`timeouts`: stage -> seconds; stages without one: 0)."""
    return tx.all(
        "SELECT stage, count(*)::int AS nodes,"
        " COALESCE(max(extract(epoch FROM now() - stage_changed_at)), 0)::float8 AS oldest_s,"
        " count(*) FILTER (WHERE (CAST(:timeouts AS jsonb) ->> stage) IS NOT NULL AND stage_changed_at"
        "  < now() - make_interval(secs => (CAST(:timeouts AS jsonb) ->> stage)::int))::int AS past_timeout"
        " FROM node GROUP BY stage ORDER BY stage",
        timeouts=json.dumps(timeouts),
    )
