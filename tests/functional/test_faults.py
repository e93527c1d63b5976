"""Races and database faults: a real PostgreSQL, killed by PID where a test needs it to die
(its own server: support/pgfault.py), real concurrent requests."""

from __future__ import annotations

import threading

import flask
import pytest
from support import ADMIN
from support.pgfault import FaultyPostgres

from bootfleet.db.connection import Database
from bootfleet.errors import DatabaseUnavailableError, RetryableDatabaseError
from bootfleet.web.api import Api


@pytest.fixture
def faulty_pg():
    pg = FaultyPostgres()
    yield pg
    pg.stop()


def _fill_pool(db: Database, size: int) -> None:
    """`size` transactions at once, so the pool holds `size` idle connections afterwards."""
    barrier = threading.Barrier(size)

    def hold():
        with db.transaction() as tx:
            tx.scalar("SELECT 1")
            barrier.wait(10)

    threads = [threading.Thread(target=hold) for _ in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert db._idle.qsize() == size


def test_the_pool_recovers_on_the_next_request_after_postgres_restarts(faulty_pg):
    """Before: every pooled connection was dead after a restart and each request tried one
    more of them: 503, 503, 503, then 200. Now the first dead one empties the pool."""
    db = Database(faulty_pg.url, pool_size=4, timeout=5)
    _fill_pool(db, 4)
    old = faulty_pg.kill()
    faulty_pg.start()
    assert faulty_pg.pid != old
    for _ in range(4):  # every request works at once, none gets a dead connection
        with db.transaction() as tx:
            assert tx.scalar("SELECT 1") == 1
    db.close()


def test_while_postgres_is_down_requests_get_503_then_work_when_it_is_back(faulty_pg):
    db = Database(faulty_pg.url, pool_size=2, timeout=2)
    _fill_pool(db, 2)
    faulty_pg.kill()
    with pytest.raises(DatabaseUnavailableError):
        with db.transaction() as tx:
            tx.scalar("SELECT 1")
    faulty_pg.start()
    with db.transaction() as tx:
        assert tx.scalar("SELECT 1") == 1
    db.close()


def test_a_connection_lost_inside_a_transaction_is_retryable(faulty_pg):
    db = Database(faulty_pg.url, pool_size=1, timeout=5)
    with pytest.raises(RetryableDatabaseError):
        with db.transaction() as tx:
            tx.scalar("SELECT 1")
            faulty_pg.kill()
            tx.scalar("SELECT 1")
    faulty_pg.start()
    with db.transaction() as tx:
        assert tx.scalar("SELECT 1") == 1
    db.close()


def test_a_deadlock_is_retried(database, clean_db):
    """Two requests lock two rows in opposite orders: PostgreSQL aborts one (40P01); it is run
    again and both succeed, instead of one answering 500."""
    with database.transaction() as tx:
        tx.run("INSERT INTO profile (name, kernel) VALUES ('a', 'k'), ('b', 'k')")
    barrier = threading.Barrier(2)
    attempts = {"ab": 0, "ba": 0}
    results = {}

    def handler(request, order):
        attempts[order] += 1
        with database.transaction() as tx:
            tx.run("SELECT 1 FROM profile WHERE name = :n FOR UPDATE", n=order[0])
            if attempts[order] == 1:
                barrier.wait(10)
            tx.run("SELECT 1 FROM profile WHERE name = :n FOR UPDATE", n=order[1])
        return "done"

    def call(order):
        request = flask.Request.from_values(path=f"/{order}", method="POST")
        try:
            results[order] = Api.run_retrying(handler, request, {"order": order})
        except Exception as e:  # noqa: BLE001 - recorded and asserted on below
            results[order] = e

    threads = [threading.Thread(target=call, args=(o,)) for o in ("ab", "ba")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {"ab": "done", "ba": "done"}
    assert sorted(attempts.values()) == [1, 2]  # exactly one was aborted and run again


def test_concurrent_creates_with_the_same_mac_are_409_never_500(function_apps, clean_db):
    """Before: 35 of 120 such requests were a 500 (the unique violation of node_mac)."""
    barrier = threading.Barrier(12)
    statuses = []

    def create(i):
        client = function_apps["config"].test_client()
        barrier.wait(10)
        resp = client.post("/api/v1/nodes", json={"macs": ["52:54:00:aa:bb:cc"], "hostname": f"n{i}"}, headers=ADMIN)
        statuses.append(resp.status_code)
        if resp.status_code == 409:
            assert "52:54:00:aa:bb:cc" in resp.json["error"]

    for _round in range(3):
        with clean_db.transaction() as tx:
            tx.run("TRUNCATE event, node_mac, node CASCADE")
        statuses.clear()
        threads = [threading.Thread(target=create, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(statuses) == [201] + [409] * 11, statuses


def test_a_request_that_already_committed_is_not_run_again(database, clean_db):
    """Run again only when nothing of it was committed: a create that committed, then lost its
    connection in a later transaction, must not create twice."""
    attempts = []

    def handler(request):
        attempts.append(1)
        with database.transaction() as tx:
            tx.run("INSERT INTO profile (name, kernel) VALUES (:n, 'k')", n=f"p{len(attempts)}")
        with database.transaction():
            raise RetryableDatabaseError("database connection lost: (as if) the server went away")

    with pytest.raises(RetryableDatabaseError):
        Api.run_retrying(handler, flask.Request.from_values(path="/x", method="POST"), {})
    assert len(attempts) == 1
    with database.transaction() as tx:
        assert tx.scalar("SELECT count(*) FROM profile") == 1
