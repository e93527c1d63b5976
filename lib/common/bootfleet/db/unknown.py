"""Unknown machines: MACs that asked boot for a script but belong to no node.

One row per MAC (`unknown_machine`), upserted on every attempt; at most one `unknown-boot`
event per MAC every BOOTFLEET_UNKNOWN_EVENT_SECONDS, and at most BOOTFLEET_UNKNOWN_MAX
rows (the least recently seen go first), so a scan of made-up MACs can neither flood the
event history nor grow the table without bound. An operator adopts one into a node.
"""

from __future__ import annotations

from bootfleet.db import events, rows
from bootfleet.db.connection import Transaction
from bootfleet.errors import NotFoundError
from bootfleet.settings import get_settings

COLUMNS = "u.mac, u.first_seen, u.last_seen, u.attempts, u.last_address, u.last_reason"
# A MAC that became a node's since (registered by hand, or adopted) is no longer unknown.
_STILL_UNKNOWN = "NOT EXISTS (SELECT 1 FROM node_mac m WHERE m.mac = u.mac)"


def record(tx: Transaction, mac: str, address: str | None, reason: str) -> None:
    """Remember a boot attempt from `mac` (normalised) that no node answers to."""
    settings = get_settings()
    row = tx.one(
        "INSERT INTO unknown_machine AS u (mac, last_address, last_reason) VALUES (:mac, :address, :reason)"
        " ON CONFLICT (mac) DO UPDATE SET last_seen = now(), attempts = u.attempts + 1,"
        "  last_address = EXCLUDED.last_address, last_reason = EXCLUDED.last_reason,"
        "  last_event_at = CASE WHEN u.last_event_at < now() - make_interval(secs => :quiet) THEN now()"
        "   ELSE u.last_event_at END"
        " RETURNING (xmax = 0) AS inserted, (last_event_at = now()) AS announce, attempts",
        mac=mac, address=address, reason=reason[:500], quiet=settings.unknown_event_seconds,
    )
    if row["announce"]:
        where = f" from {address}" if address else ""
        again = "" if row["inserted"] else f" ({row['attempts']} attempts so far)"
        events.add(tx, "unknown-boot", f"unknown machine {mac} tried to boot{where}: {reason}{again}", "boot")
    if row["inserted"]:  # keep the table bounded: the least recently seen beyond the cap go
        tx.run("DELETE FROM unknown_machine WHERE mac IN (SELECT mac FROM unknown_machine"
               " ORDER BY last_seen DESC, mac OFFSET :cap)", cap=max(settings.unknown_max, 1))


def listing(tx: Transaction, limit: int, offset: int) -> tuple[list[dict], int]:
    """Unknown machines, most recently seen first."""
    return rows.page(tx, f"SELECT {COLUMNS} FROM unknown_machine u", "unknown_machine u",
                     f"WHERE {_STILL_UNKNOWN}", "u.last_seen DESC, u.mac", limit, offset)


def get(tx: Transaction, mac: str) -> dict:
    row = tx.one(f"SELECT {COLUMNS} FROM unknown_machine u WHERE u.mac = :mac AND {_STILL_UNKNOWN} FOR UPDATE",
                 mac=mac)
    if row is None:
        raise NotFoundError(f"no unknown machine with MAC {mac} (bootfleet node unknown lists them)")
    return row


def forget(tx: Transaction, mac: str) -> None:
    tx.run("DELETE FROM unknown_machine WHERE mac = :mac", mac=mac)
