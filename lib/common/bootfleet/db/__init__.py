"""The database: connections (`connection`), migrations (`migrate`), and every query,
one module per noun (`profiles`, `deployments`, `nodes`, `events`, `dns_records`).

Nothing outside this package writes SQL. Query functions take an open `Transaction`,
so a caller composes several into one transaction:

    with get_database().transaction() as tx:
        node = nodes.get(tx, node_id, lock=True)
        nodes.set_stage(tx, node_id, "ready", "node")
"""

from __future__ import annotations

import threading

from bootfleet import metrics
from bootfleet.db.connection import Database, Transaction
from bootfleet.errors import DatabaseUnavailableError
from bootfleet.settings import Settings, get_settings

__all__ = ["Database", "Transaction", "get_database", "open_database", "reset_database"]

_database: Database | None = None
_database_lock = threading.Lock()


def open_database(settings: Settings) -> Database:
    """A Database for these settings; it applies the migrations on first use unless
    BOOTFLEET_AUTO_MIGRATE is off."""
    from bootfleet.db.migrate import apply_migrations

    if not settings.database_url:
        raise DatabaseUnavailableError(
            "BOOTFLEET_DATABASE_URL is not set (`bootfleet serve` sets it for the embedded database)"
        )
    return Database(settings.database_url, settings.db_pool_size, settings.db_timeout,
                    on_first_use=apply_migrations if settings.auto_migrate else None)


def get_database() -> Database:
    """The process's Database, created on first use from the settings."""
    global _database
    if _database is None:
        with _database_lock:
            if _database is None:
                _database = open_database(get_settings())
                metrics.pool_size(_database.pool_size)
    return _database


def reset_database() -> None:
    """Close and forget the process's Database (tests, settings changes)."""
    global _database
    with _database_lock:
        if _database is not None:
            _database.close()
        _database = None
