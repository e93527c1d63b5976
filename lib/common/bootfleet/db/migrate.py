"""Plain SQL migrations, applied once, under a PostgreSQL advisory lock.

Files in migrations/ named NNNN_what.sql run in order, each in the same
transaction as its row in schema_migration. Many cold starts at once queue on
the advisory lock; the first applies what is missing, the rest find it done.
"""

from __future__ import annotations

import logging
from importlib import resources

from bootfleet.db.connection import CONNECTION_ERRORS, Database
from bootfleet.errors import DatabaseUnavailableError

log = logging.getLogger(__name__)

LOCK_NAME = "bootfleet-migrations"


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) for every migration, in order."""
    folder = resources.files("bootfleet.db") / "migrations"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), (folder / name).read_text()) for name in names]


def apply_migrations(database: Database) -> list[str]:
    """Apply the missing migrations; returns the versions applied now. An instance starting on an
    up-to-date database (every start but a release's first) only reads what was applied (two
    short queries): no lock, no transaction (a function's cold start pays for it)."""
    try:
        if not pending(database):
            return []
    except CONNECTION_ERRORS as e:
        raise DatabaseUnavailableError(f"cannot apply migrations: {e}") from e
    applied_now = []
    try:
        with database.connection() as conn, database.advisory_lock(LOCK_NAME, wait=True, conn=conn):
            conn.run("BEGIN")
            try:
                conn.run(
                    "CREATE TABLE IF NOT EXISTS schema_migration ("
                    " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = {row[0] for row in conn.run("SELECT version FROM schema_migration")}
                for version, sql in migration_files():
                    if version in done:
                        continue
                    log.info("applying migration %s", version)
                    conn.execute_simple(sql)
                    conn.run("INSERT INTO schema_migration (version) VALUES (:v)", v=version)
                    applied_now.append(version)
                conn.run("COMMIT")
            except BaseException:
                conn.run("ROLLBACK")
                raise
    except CONNECTION_ERRORS as e:
        raise DatabaseUnavailableError(f"cannot apply migrations: {e}") from e
    return applied_now


def pending(database: Database) -> list[str]:
    """The migrations not applied yet (all of them on a database never migrated)."""
    with database.connection() as conn:
        exists = conn.run("SELECT to_regclass('schema_migration') IS NOT NULL")[0][0]
        done = {row[0] for row in conn.run("SELECT version FROM schema_migration")} if exists else set()
    return [version for version, _ in migration_files() if version not in done]
