"""PostgreSQL through pg8000, shaped for serverless functions.

One `Database` per process (see `get_database`). It keeps a small pool of
connections that are reused across requests, checks a reused connection with
the transaction's own BEGIN (a dead one is replaced once, before anything ran),
and turns every connection failure into `DatabaseUnavailableError` so callers
can answer sensibly (boot answers a retry script, the APIs a 503).

After PostgreSQL restarts every pooled connection is dead: the first one found dead
at BEGIN empties the pool, so the next request reconnects instead of failing once per
dead connection. A deadlock, a serialization failure, or a connection lost before
COMMIT raises `RetryableDatabaseError`: nothing was committed, and `web/api.py` runs
the request again. A value the database refuses (SQLSTATE class 22: out of range,
bad encoding) is the caller's mistake, a 400.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import queue
import select
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pg8000.exceptions
import pg8000.native

from bootfleet import metrics
from bootfleet.db.statements import (  # noqa: F401 - Transaction, commits and error_code are imported from here too
    Transaction,
    commits,
    count_commit,
    error_code,
    mapped,
    message_of,
    plain,
    prepared,
    stale_plan,
)
from bootfleet.errors import DatabaseUnavailableError, RetryableDatabaseError, SettingsError

log = logging.getLogger(__name__)

# Errors that mean "the connection is gone", as opposed to an SQL error.
CONNECTION_ERRORS = (pg8000.exceptions.InterfaceError, OSError, ConnectionError)


def connect_args(url: str, timeout: int = 5) -> dict[str, Any]:
    """pg8000 connection arguments from a libpq-style URL.

    postgresql://user:password@host:5432/dbname?sslmode=require
    postgresql://user@/dbname?host=/run/postgresql     (unix socket directory)
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql"):
        raise SettingsError(f"BOOTFLEET_DATABASE_URL must start with postgresql://, got {parsed.scheme!r}")
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    args: dict[str, Any] = {
        "user": unquote(parsed.username or "postgres"),
        "password": unquote(parsed.password) if parsed.password else None,
        "database": unquote(parsed.path.lstrip("/")) or "postgres",
        "timeout": timeout,
        "application_name": "bootfleet",
    }
    port = parsed.port or int(query.get("port", 5432))
    host = parsed.hostname or query.get("host")
    if host and host.startswith("/"):
        args["unix_sock"] = f"{host}/.s.PGSQL.{port}"
    else:
        args["host"] = host or "127.0.0.1"
        args["port"] = port
    sslmode = query.get("sslmode", "prefer" if args.get("host") not in ("127.0.0.1", "localhost") else "disable")
    if "unix_sock" in args or sslmode == "disable":
        # No TLS: pg8000's default would still ask for it (a round trip) after loading the
        # system's CA bundle into a new SSL context, tens of ms on every connection.
        args["ssl_context"] = False
    elif sslmode in ("require", "verify-ca", "verify-full"):
        context = ssl.create_default_context(cafile=query.get("sslrootcert"))
        if sslmode == "require":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif sslmode == "verify-ca":
            context.check_hostname = False
        args["ssl_context"] = context
    return args


class Database:
    """A small pool of pg8000 connections to one database."""

    def __init__(self, url: str, pool_size: int = 4, timeout: int = 5,
                 on_first_use: Callable[[Database], Any] | None = None):
        """`on_first_use(database)` runs once before the first transaction (migrations)."""
        self.url = url
        self.args = connect_args(url, timeout)
        self.pool_size = max(1, pool_size)
        self._idle: queue.LifoQueue[pg8000.native.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(self.pool_size)
        self._on_first_use = on_first_use
        self._migrated = on_first_use is None
        self._migrate_lock = threading.Lock()

    def _connect(self) -> pg8000.native.Connection:
        try:
            conn = pg8000.native.Connection(**self.args)
        except CONNECTION_ERRORS as e:
            metrics.db_connect("error")
            raise DatabaseUnavailableError(f"cannot connect to the database: {e}") from e
        except pg8000.exceptions.DatabaseError as e:
            metrics.db_connect("refused")
            # Wrong password, unknown database, server starting up: all mean "not usable now".
            raise DatabaseUnavailableError(f"the database refused the connection: {message_of(e)}") from e
        metrics.db_connect("ok")
        return conn

    def _take_slot(self) -> None:
        """A place in the pool (waiting up to 30 s); counted in use until `_give_slot`."""
        waited = not self._slots.acquire(blocking=False)
        if waited and not self._slots.acquire(timeout=30):
            raise DatabaseUnavailableError("no database connection free after 30 s")
        metrics.pool_taken(waited)

    def _give_slot(self) -> None:
        metrics.pool_given()
        self._slots.release()

    @staticmethod
    def _discard(conn: pg8000.native.Connection) -> None:
        with contextlib.suppress(Exception):
            conn.close()

    @contextlib.contextmanager
    def connection(self) -> Iterator[pg8000.native.Connection]:
        """A connection from the pool, returned after use (or dropped if broken)."""
        self._take_slot()
        conn = None
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
            yield conn
        except CONNECTION_ERRORS:
            if conn is not None:
                self._discard(conn)
            conn = None
            raise
        finally:
            if conn is not None:
                self._idle.put(conn)
            self._give_slot()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """BEGIN ... COMMIT, or ROLLBACK on any error.

        A pooled connection that died while idle is noticed at BEGIN and
        replaced once; nothing has run yet, so the retry is safe.
        """
        self.ensure_migrated()
        for attempt in (1, 2):
            self._take_slot()
            conn = None
            try:
                reused = not self._idle.empty()
                try:
                    conn = self._idle.get_nowait()
                except queue.Empty:
                    conn = self._connect()
                try:
                    conn.run("BEGIN")
                except CONNECTION_ERRORS as e:
                    self._discard(conn)
                    conn = None
                    if reused and attempt == 1:
                        # The server went away (a restart): the other idle connections are as dead.
                        dropped = self._drain()
                        log.warning("pooled database connection was dead; dropped %d idle, reconnecting", dropped + 1)
                        continue
                    raise DatabaseUnavailableError(f"database connection failed: {e}") from e
                try:
                    yield Transaction(conn)
                except CONNECTION_ERRORS as e:
                    self._discard(conn)
                    conn = None
                    self._drain()
                    # Lost before COMMIT: nothing was committed, so the request may run again.
                    raise RetryableDatabaseError(f"database connection lost: {e}") from e
                except BaseException:
                    try:
                        conn.run("ROLLBACK")
                    except CONNECTION_ERRORS:
                        self._discard(conn)
                        conn = None
                    raise
                try:
                    conn.run("COMMIT")
                except CONNECTION_ERRORS as e:
                    self._discard(conn)
                    conn = None
                    raise DatabaseUnavailableError(f"database connection lost at commit: {e}") from e
                count_commit()
                return
            finally:
                if conn is not None:
                    self._idle.put(conn)
                self._give_slot()

    def statement(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Run one statement on its own (it commits by itself): one round trip on a statement
        prepared once per connection. For the hot path (db/boot.py), where BEGIN and COMMIT
        would be two round trips more. A pooled connection whose server has gone (a
        restart) is noticed without asking it (its socket is readable: the server's goodbye)
        and replaced, with every other idle one. Not retried once sent: it may have run."""
        self.ensure_migrated()
        self._take_slot()
        conn = None
        try:
            while True:
                try:
                    conn = self._idle.get_nowait()
                except queue.Empty:
                    conn = self._connect()
                    break
                if not _gone(conn):
                    break
                self._discard(conn)
                dropped = self._drain()
                log.warning("pooled database connection was closed by the server; dropped %d idle, reconnecting",
                            dropped + 1)
                conn = None
            try:
                try:
                    statement = prepared(conn, sql)
                    rows = mapped(lambda: statement.run(**params)) or []
                except pg8000.exceptions.DatabaseError as e:
                    if not stale_plan(conn, e):
                        raise
                    statement = prepared(conn, sql)  # nothing ran: once more, on a new statement
                    rows = mapped(lambda: statement.run(**params)) or []
            except CONNECTION_ERRORS as e:
                self._discard(conn)
                conn = None
                self._drain()
                raise DatabaseUnavailableError(f"database connection lost: {e}") from e
            names = [c["name"] for c in (statement.columns or [])]
            return [{n: plain(v) for n, v in zip(names, row)} for row in rows]
        finally:
            if conn is not None:
                self._idle.put(conn)
            self._give_slot()

    def _drain(self) -> int:
        """Close every idle connection; how many there were."""
        count = 0
        while True:
            try:
                self._discard(self._idle.get_nowait())
            except queue.Empty:
                return count
            count += 1

    def ping(self) -> None:
        """Check the database answers (a health check); DatabaseUnavailableError if not."""
        with self.transaction() as tx:
            tx.scalar("SELECT 1")

    def ensure_migrated(self) -> None:
        """Run the first-use hook (migrations) once per process."""
        if self._migrated:
            return
        with self._migrate_lock:
            if not self._migrated:
                self._on_first_use(self)
                self._migrated = True

    @contextlib.contextmanager
    def advisory_lock(self, name: str, wait: bool = False,
                      conn: pg8000.native.Connection | None = None) -> Iterator[bool]:
        """A PostgreSQL advisory lock named `name`, held for the block.

        It is held on `conn` (a pooled connection the caller works on: migrations, so a cold
        start opens no extra connection), else on a connection of its own outside the pool (so
        a pool of one still has a connection for the work under the lock). Yields True when
        held; with wait=False, False at once if another session holds it.
        """
        own = conn is None
        conn = self._connect() if own else conn
        try:
            try:
                if wait:
                    conn.run("SELECT pg_advisory_lock(hashtext(:k))", k=name)
                    got = True
                else:
                    got = conn.run("SELECT pg_try_advisory_lock(hashtext(:k))", k=name)[0][0]
            except CONNECTION_ERRORS as e:
                raise DatabaseUnavailableError(f"database connection lost taking lock {name!r}: {e}") from e
            try:
                yield got
            finally:
                if got and not own:
                    conn.run("SELECT pg_advisory_unlock(hashtext(:k))", k=name)
        finally:
            if own:  # closing the session releases its advisory locks
                self._discard(conn)

    def close(self) -> None:
        self._drain()


def _gone(conn: pg8000.native.Connection) -> bool:
    """Whether an idle connection's server has closed it: its socket has something to read
    (an idle connection is sent nothing else). No round trip."""
    sock = getattr(conn, "_usock", None)
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
