"""Running statements: a transaction's queries, prepared once per connection, and the
database's refusals as bootfleet's errors (db/connection.py holds the pool that uses them)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pg8000.exceptions
import pg8000.native

from bootfleet.errors import BadRequestError, RetryableDatabaseError


def plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


# SQLSTATEs after which running the whole transaction again may succeed.
RETRYABLE = {"40001": "serialization failure", "40P01": "deadlock"}
_thread = threading.local()


def count_commit() -> None:
    """One more transaction committed by this thread (Database.transaction)."""
    _thread.commits = commits() + 1


def commits() -> int:
    """How many transactions this thread has committed (web/api.py runs a request again after a
    retryable error only if none committed meanwhile: nothing is then done twice)."""
    return getattr(_thread, "commits", 0)


def mapped(run: Callable[[], Any]) -> Any:
    """`run()`, with the database's refusals as bootfleet's errors: a deadlock or a
    serialization failure retryable, a value it refuses (SQLSTATE class 22) a 400."""
    try:
        return run()
    except pg8000.exceptions.DatabaseError as e:
        code = error_code(e) or ""
        if code in RETRYABLE:
            raise RetryableDatabaseError(f"{RETRYABLE[code]}: {message_of(e)}") from e
        if code.startswith("22"):  # data exception: a value from the request the database refuses
            raise BadRequestError(f"the database refused a value: {message_of(e)}") from e
        raise
    except UnicodeEncodeError as e:  # a lone surrogate that got this far
        raise BadRequestError("text must be valid Unicode (no lone surrogates)") from e


# Statements prepared per connection, at most. bootfleet's SQL texts are fewer; a text built per
# request (a listing's filters) takes a place in turn, the oldest going first.
PREPARED_KEPT = 256


def prepared(conn: pg8000.native.Connection, sql: str) -> pg8000.native.PreparedStatement:
    """`sql` prepared on this connection, once. pg8000 runs a statement with parameters in three
    round trips (parse, describe, then bind and execute: PostgreSQL parses and plans it each
    time); a prepared one in one. PostgreSQL infers the parameters' types from the statement
    either way (pg8000 sends none), so a statement prepares exactly when it would run."""
    cache = conn.__dict__.setdefault("_bootfleet_prepared", {})
    statement = cache.get(sql)
    if statement is None:
        if len(cache) >= PREPARED_KEPT:  # the oldest goes (a round trip to close it, rarely)
            cache.pop(next(iter(cache))).close()
        statement = cache[sql] = conn.prepare(sql)
    return statement


def stale_plan(conn: pg8000.native.Connection, e: Exception) -> bool:
    """A table changed under a prepared statement (a migration by a newer instance): PostgreSQL
    refuses to run it ("cached plan must not change result type"). This connection's statements
    are forgotten; the request runs again on new ones."""
    if error_code(e) == "0A000" and "cached plan" in message_of(e):
        conn.__dict__.pop("_bootfleet_prepared", None)
        return True
    return False


class Transaction:
    """Queries inside one transaction. Parameters are named: `:name`; a statement with
    parameters is prepared once per connection (`prepared`)."""

    def __init__(self, conn: pg8000.native.Connection):
        self.conn = conn
        self.columns: list[dict] | None = None  # of the last statement

    def _run(self, sql: str, params: dict[str, Any]) -> Any:
        if not params:  # one simple query (BEGIN; several statements): one round trip already
            rows = mapped(lambda: self.conn.run(sql))
            self.columns = self.conn.columns
            return rows
        try:
            statement = prepared(self.conn, sql)
            rows = mapped(lambda: statement.run(**params))
        except pg8000.exceptions.DatabaseError as e:
            if stale_plan(self.conn, e):
                raise RetryableDatabaseError(f"a table changed under a prepared statement: {message_of(e)}") from e
            raise
        self.columns = statement.columns
        return rows

    def run(self, sql: str, **params: Any) -> None:
        self._run(sql, params)

    def all(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        rows = self._run(sql, params) or []
        names = [c["name"] for c in (self.columns or [])]
        return [{n: plain(v) for n, v in zip(names, row)} for row in rows]

    def one(self, sql: str, **params: Any) -> dict[str, Any] | None:
        rows = self.all(sql, **params)
        return rows[0] if rows else None

    def scalar(self, sql: str, **params: Any) -> Any:
        rows = self._run(sql, params)
        return plain(rows[0][0]) if rows else None


def message_of(e: Exception) -> str:
    if e.args and isinstance(e.args[0], dict):
        return e.args[0].get("M", str(e))
    return str(e)


def error_code(e: Exception) -> str | None:
    """The SQLSTATE of a pg8000 DatabaseError (23505 = unique violation, ...)."""
    if e.args and isinstance(e.args[0], dict):
        return e.args[0].get("C")
    return None
