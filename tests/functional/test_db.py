"""Connection handling and migrations against the real PostgreSQL."""

import os
import threading
import uuid
from urllib.parse import urlparse, urlunparse

import pytest

from bootfleet.db.connection import Database, connect_args
from bootfleet.db.migrate import apply_migrations, migration_files
from bootfleet.errors import DatabaseUnavailableError


def _url_for(dbname: str) -> str:
    parsed = urlparse(os.environ["BOOTFLEET_TEST_DATABASE_URL"])
    return urlunparse(parsed._replace(path=f"/{dbname}"))


@pytest.fixture
def fresh_database(database):
    """A new, empty database on the test server."""
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    with database.connection() as conn:
        conn.run(f"CREATE DATABASE {name}")
    yield _url_for(name)
    with database.connection() as conn:
        conn.run(f"DROP DATABASE {name} WITH (FORCE)")


def test_many_cold_starts_apply_each_migration_once(fresh_database):
    starts = 8
    barrier = threading.Barrier(starts)
    results, errors = [], []

    def cold_start():
        db = Database(fresh_database, pool_size=1)
        barrier.wait()
        try:
            results.append(apply_migrations(db))
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)
        finally:
            db.close()

    threads = [threading.Thread(target=cold_start) for _ in range(starts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    versions = [v for v, _ in migration_files()]
    assert sorted(v for applied in results for v in applied) == versions  # each exactly once
    assert sum(1 for applied in results if applied) == 1
    db = Database(fresh_database)
    with db.connection() as conn:
        assert [r[0] for r in conn.run("SELECT version FROM schema_migration ORDER BY version")] == versions
    db.close()


def test_pooled_connection_reused_and_replaced_after_it_dies(database):
    db = Database(os.environ["BOOTFLEET_TEST_DATABASE_URL"], pool_size=2)
    with db.transaction() as tx:
        first_pid = tx.scalar("SELECT pg_backend_pid()")
    with db.transaction() as tx:
        assert tx.scalar("SELECT pg_backend_pid()") == first_pid  # reused across requests
    with database.transaction() as tx:  # the server drops that connection
        tx.run("SELECT pg_terminate_backend(:pid)", pid=first_pid)
    with db.transaction() as tx:
        new_pid = tx.scalar("SELECT pg_backend_pid()")
    assert new_pid != first_pid
    db.close()


def test_connection_lost_mid_transaction_is_unavailable_and_recovers(database):
    db = Database(os.environ["BOOTFLEET_TEST_DATABASE_URL"], pool_size=1)
    with pytest.raises(DatabaseUnavailableError):
        with db.transaction() as tx:
            pid = tx.scalar("SELECT pg_backend_pid()")
            with database.transaction() as other:
                other.run("SELECT pg_terminate_backend(:pid)", pid=pid)
            tx.scalar("SELECT 1")
    with db.transaction() as tx:  # the next request reconnects
        assert tx.scalar("SELECT 1") == 1
    db.close()


def test_unreachable_database_is_unavailable_not_a_crash():
    db = Database("postgresql://nobody@127.0.0.1:1/none", timeout=1)
    with pytest.raises(DatabaseUnavailableError, match="cannot connect"):
        with db.transaction():
            pass


def test_pool_is_shared_by_threads_within_its_size(database):
    db = Database(os.environ["BOOTFLEET_TEST_DATABASE_URL"], pool_size=3)
    pids, lock = set(), threading.Lock()

    def work():
        for _ in range(20):
            with db.transaction() as tx:
                pid = tx.scalar("SELECT pg_backend_pid()")
                with lock:
                    pids.add(pid)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= len(pids) <= 3
    db.close()


@pytest.mark.parametrize(
    "url,expected",
    [
        ("postgresql://u:p%40ss@db.example:6543/fleet?sslmode=require",
         {"user": "u", "password": "p@ss", "host": "db.example", "port": 6543, "database": "fleet"}),
        ("postgresql://postgres@/postgres?host=/tmp/sock", {"unix_sock": "/tmp/sock/.s.PGSQL.5432"}),
    ],
)
def test_database_urls(url, expected):
    args = connect_args(url)
    for key, value in expected.items():
        assert args[key] == value
    if "sslmode=require" in url:
        assert args["ssl_context"] is not None
    else:  # a unix socket: no TLS, and no SSL request nor CA bundle loaded on each connection
        assert args["ssl_context"] is False


def test_sslmode_disable_and_prefer():
    assert connect_args("postgresql://u@127.0.0.1/db")["ssl_context"] is False  # local: disable by default
    assert connect_args("postgresql://u@db.example/db?sslmode=disable")["ssl_context"] is False
    assert "ssl_context" not in connect_args("postgresql://u@db.example/db")  # prefer: pg8000 tries TLS, falls back


def test_a_statement_prepared_before_a_migration_runs_again_after_it(fresh_database):
    """Statements are prepared once per connection (db/statements.py); a newer instance's migration
    that changes a table under one makes PostgreSQL refuse it ("cached plan must not change result
    type"): the statement is prepared again (Database.statement), or the transaction is retryable
    (the Api layer runs the request again), never a lasting failure."""
    from bootfleet.errors import RetryableDatabaseError

    db = Database(fresh_database, pool_size=1)
    with db.connection() as conn:
        conn.run("CREATE TABLE thing (id integer PRIMARY KEY, name text)")
        conn.run("INSERT INTO thing VALUES (1, 'one')")
    assert db.statement("SELECT * FROM thing WHERE id = :id", id=1) == [{"id": 1, "name": "one"}]
    with db.transaction() as tx:
        assert tx.all("SELECT * FROM thing WHERE id = :id", id=1) == [{"id": 1, "name": "one"}]

    other = Database(fresh_database, pool_size=1)  # the newer instance
    with other.connection() as conn:
        conn.run("ALTER TABLE thing ADD COLUMN size integer NOT NULL DEFAULT 7")

    with pytest.raises(RetryableDatabaseError, match="changed under a prepared statement"):
        with db.transaction() as tx:
            tx.all("SELECT * FROM thing WHERE id = :id", id=1)
    with db.transaction() as tx:  # the request once more
        assert tx.all("SELECT * FROM thing WHERE id = :id", id=1) == [{"id": 1, "name": "one", "size": 7}]

    with other.connection() as conn:
        conn.run("ALTER TABLE thing DROP COLUMN size")
    other.close()
    assert db.statement("SELECT * FROM thing WHERE id = :id", id=1) == [{"id": 1, "name": "one"}]
    db.close()
