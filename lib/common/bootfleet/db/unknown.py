"""Unknown machines: MACs that asked boot for a script but belong to no node.

One row per MAC (`unknown_machine`), upserted on every attempt; at most one `unknown-boot`
event per MAC every BOOTFLEET_UNKNOWN_EVENT_SECONDS and at most BOOTFLEET_UNKNOWN_EVENT_MAX
for all MACs in that time, and at most BOOTFLEET_UNKNOWN_MAX rows (the least recently seen go
first), so a scan of made-up MACs can neither flood the event history nor grow the table
without bound: the SQL function bootfleet_record_unknown (migrations/0016_boot_step.sql) does it,
called here and by the boot step itself (db/boot.py) for a machine refused without proof, known
or not: the same work either way. An operator adopts one into a node.
"""

from __future__ import annotations

from bootfleet.db import rows
from bootfleet.db.connection import Transaction
from bootfleet.errors import NotFoundError
from bootfleet.settings import get_settings

COLUMNS = "u.mac, u.first_seen, u.last_seen, u.attempts, u.last_address, u.last_reason"
# A MAC that became a node's since (registered by hand, or adopted) is no longer unknown.
_STILL_UNKNOWN = "NOT EXISTS (SELECT 1 FROM node_mac m WHERE m.mac = u.mac)"


def limits() -> tuple[int, int, int]:
    """(seconds between one MAC's events, most rows kept, most events in those seconds): the
    settings bootfleet_record_unknown takes, here and in the boot step (db/boot.py)."""
    settings = get_settings()
    return settings.unknown_event_seconds, max(settings.unknown_max, 1), settings.unknown_event_max


def record(tx: Transaction, mac: str, address: str | None, reason: str) -> None:
    """Remember a boot attempt from `mac` (normalised) that no node answers to."""
    quiet, cap, event_max = limits()
    tx.run("SELECT bootfleet_record_unknown(CAST(:mac AS text), CAST(:address AS text), CAST(:reason AS text),"
           " CAST(:quiet AS integer), CAST(:cap AS integer), CAST(:event_max AS integer), true)",
           mac=mac, address=address, reason=reason[:500], quiet=quiet, cap=cap, event_max=event_max)


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
