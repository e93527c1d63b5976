"""Shared fixtures: a real PostgreSQL that the suite starts itself, the functions
as functions-framework test clients, and the whole system as a real server.

Nothing here mocks our code or the database.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "test-admin-token"
TOKEN_SECRET = "test-token-secret"
TABLES = ("event", "dns_record", "node_mac", "node", "deployment", "profile")

_pg = None


def _start_postgres() -> str:
    """A throwaway PostgreSQL for this test run (pgserver bundles the server)."""
    global _pg
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="bootfleet-run-"))
    import pgserver

    data = Path(tempfile.mkdtemp(prefix="bootfleet-test-pg-"))
    _pg = pgserver.get_server(data / "pg", cleanup_mode="delete")
    return _pg.get_uri("postgres")


def pytest_configure(config):
    # Settings are read from the environment; set them before any function loads.
    if not os.environ.get("BOOTFLEET_TEST_DATABASE_URL"):
        os.environ["BOOTFLEET_TEST_DATABASE_URL"] = _start_postgres()
    os.environ.update(
        BOOTFLEET_DATABASE_URL=os.environ["BOOTFLEET_TEST_DATABASE_URL"],
        BOOTFLEET_ADMIN_TOKEN=ADMIN_TOKEN,
        BOOTFLEET_TOKEN_SECRET=TOKEN_SECRET,
        BOOTFLEET_RETRY_SECONDS="5",
        BOOTFLEET_LOG_LEVEL="WARNING",
    )
    for name in ("BOOTFLEET_BASE_URL", "BOOTFLEET_IMAGES_BASE_URL", "BOOTFLEET_DISCOVERY_PROFILE"):
        os.environ.pop(name, None)


def pytest_unconfigure(config):
    if _pg is not None:
        logging.getLogger("pgserver").setLevel(logging.ERROR)
        _pg.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def database():
    from bootfleet.db import get_database

    db = get_database()
    db.ensure_migrated()
    return db


@pytest.fixture
def clean_db(database):
    """An empty database for this test."""
    with database.transaction() as tx:
        tx.run(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    return database


def snapshot(database) -> dict:
    """Every row of every table: compare before and after to prove nothing changed."""
    with database.transaction() as tx:
        return {t: tx.all(f"SELECT * FROM {t} ORDER BY 1") for t in TABLES}


@pytest.fixture(scope="session")
def function_apps():
    from bootfleet.web.router import FUNCTIONS, create_function_app

    return {name: create_function_app(name) for name in FUNCTIONS}


@pytest.fixture
def boot(function_apps, clean_db):
    return function_apps["boot"].test_client()


@pytest.fixture
def config(function_apps, clean_db):
    return function_apps["config"].test_client()


@pytest.fixture
def status(function_apps, clean_db):
    return function_apps["status"].test_client()


@pytest.fixture
def dns(function_apps, clean_db):
    return function_apps["dns"].test_client()


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def admin():
    return dict(ADMIN)


class RunningServer:
    """`bootfleet serve` as a real process on a free port."""

    def __init__(self, env: dict | None = None, workers: int = 1, threads: int = 8):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = Path(tempfile.mkdtemp(prefix="bootfleet-serve-"))
        self.env = {**os.environ, "BOOTFLEET_DATA_DIR": str(self.data), **(env or {})}
        self.log = open(self.data / "server.log", "w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bootfleet.cli", "serve", "--port", str(self.port), "--workers", str(workers),
             "--threads", str(threads), "--no-demo"],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bootfleet serve exited:\n{self.output()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or busy starting
                pass
            time.sleep(0.1)
        raise RuntimeError(f"bootfleet serve not ready after {timeout} s:\n{self.output()}")

    def output(self) -> str:
        self.log.flush()
        return (self.data / "server.log").read_text()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="session")
def server(database):
    """The whole system behind one local server, as `make run` starts it."""
    srv = RunningServer()
    yield srv
    srv.stop()
