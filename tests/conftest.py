"""Shared by every test directory (unit, functional, e2e, infra): a real PostgreSQL that
the suite starts itself, the settings fixture, the functions as functions-framework test
clients, and the whole system as a real server.

Support code lives in tests/support/ (imported as `support`: tests/ is on sys.path through
pyproject's pytest `pythonpath`); the fixtures only the functional tests use (the fake
cloud, a real BIND) are in tests/functional/conftest.py.

Nothing here mocks our code or the database.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pytest
from support import ADMIN, ADMIN_TOKEN, TOKEN_SECRET
from support.helpers import TABLES, TEAM_TABLES
from support.server import RunningServer

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
        # As `bootfleet serve` defaults: machines on loopback are on a boot network. The
        # attacker tests (tests/functional/test_security.py) set their own.
        BOOTFLEET_BOOT_NETWORKS="127.0.0.0/8,::1/128",
        BOOTFLEET_BOOT_RATE_LIMIT="0",
        BOOTFLEET_ADMIN_FAILURE_LIMIT="0",  # tests send wrong tokens on purpose; test_abuse sets its own
    )
    for name in ("BOOTFLEET_BASE_URL", "BOOTFLEET_IMAGES_BASE_URL", "BOOTFLEET_DISCOVERY_PROFILE"):
        os.environ.pop(name, None)


def pytest_unconfigure(config):
    if _pg is not None:
        logging.getLogger("pgserver").setLevel(logging.ERROR)
        _pg.cleanup()


@pytest.fixture
def settings():
    """Change bootfleet's settings for this test: returns `apply(*environ, **values)`.

        settings(cleanup_cap=2, cron_secret="s")   # BOOTFLEET_CLEANUP_CAP=2, BOOTFLEET_CRON_SECRET=s
        settings(ibmcloud_api_key=None)            # unsets BOOTFLEET_IBMCLOUD_API_KEY
        settings(bind.env(), dns_port=port)        # whole BOOTFLEET_ names too, as bind.env() and s3.env() give them

    Each call sets the variables, calls bootfleet.settings.reset_settings() and returns the
    new get_settings(). At the end of the test every variable is put back and the settings
    are reset again. A test that needs the process's Database made again (a new database
    URL or pool setting) still calls bootfleet.db.reset_database() itself.
    """
    from bootfleet.settings import PREFIX, get_settings, reset_settings

    patch = pytest.MonkeyPatch()

    def apply(*environ: dict[str, object], **values: object):
        changes: dict[str, object] = {}
        for env in environ:
            for name, value in env.items():
                assert name.startswith(PREFIX), f"{name} is not a {PREFIX} setting"
                changes[name] = value
        changes.update({PREFIX + name.upper(): value for name, value in values.items()})
        for name, value in changes.items():
            if value is None:
                patch.delenv(name, raising=False)
            else:
                patch.setenv(name, str(value).lower() if isinstance(value, bool) else str(value))
        reset_settings()
        return get_settings()

    yield apply
    patch.undo()
    reset_settings()


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
        tx.run(f"TRUNCATE {', '.join(TABLES + TEAM_TABLES)} RESTART IDENTITY CASCADE")
    return database


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


@pytest.fixture
def admin():
    return dict(ADMIN)


@pytest.fixture(scope="session")
def server(database):
    """The whole system behind one local server, as `make run` starts it."""
    srv = RunningServer()
    yield srv
    srv.stop()
