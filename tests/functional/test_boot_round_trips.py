"""A node-script request costs one database round trip (issue 15), counted on the wire
by a proxy between the boot function and PostgreSQL."""

from __future__ import annotations

import pytest
from support.helpers import make_node, make_profile
from support.pgwire import PgWireCounter

import bootfleet.db as dbmod

MAC = "52:54:00:00:00:01"


@pytest.fixture
def counted(settings, clean_db):
    import os

    proxy = PgWireCounter(os.environ["BOOTFLEET_TEST_DATABASE_URL"])
    settings(database_url=proxy.url, db_pool_size=1, auto_migrate=False)
    dbmod.reset_database()
    yield proxy
    dbmod.reset_database()
    proxy.close()


def one_request(boot, proxy, path):
    boot.get(path)  # warm: the pooled connection exists and the statement is prepared
    proxy.reset()
    answer = boot.get(path)
    return answer.get_data(as_text=True), proxy.round_trips()


def test_a_node_script_is_one_round_trip(boot, config, admin, counted):
    make_profile(config, admin)
    make_node(config, admin, profile="worker")
    boot.get(f"/ipxe?mac={MAC}")  # opens the install (registered -> booting)
    script, trips = one_request(boot, counted, f"/ipxe?mac={MAC}&serial=S1")  # booting: asked again
    assert "kernel " in script and "token=" in script
    assert trips == 1, counted.counts

    config.post(f"/api/v1/nodes/{make_node(config, admin, mac='52:54:00:00:00:02', profile='worker')['id']}"
                "/reinstall", headers=admin)
    counted.reset()
    script = boot.get("/ipxe?mac=52:54:00:00:00:02").get_data(as_text=True)  # registered -> booting
    assert "token=" in script and counted.round_trips() == 1, counted.counts


def test_a_refusal_is_one_round_trip_too(boot, config, admin, counted):
    make_profile(config, admin, require_secret=True)
    make_node(config, admin, profile="worker")
    script, trips = one_request(boot, counted, f"/ipxe?mac={MAC}")
    assert "no boot script for this machine" in script and trips == 1, counted.counts


def test_a_changed_profile_reaches_the_next_boot_for_one_more_round_trip(boot, config, admin, counted):
    """Boot keeps a node's profile and deployment rows per process by row version (db/boot.py):
    a change is read on the next boot (one more round trip), then kept again."""
    make_profile(config, admin, args="console=ttyS0 first")
    make_node(config, admin, profile="worker")
    script, trips = one_request(boot, counted, f"/ipxe?mac={MAC}")
    assert " first" in script and trips == 1, counted.counts

    assert config.patch("/api/v1/profiles/worker", json={"args": "console=ttyS0 second"},
                        headers=admin).status_code == 200
    counted.reset()
    script = boot.get(f"/ipxe?mac={MAC}").get_data(as_text=True)
    assert " second" in script and " first" not in script
    assert counted.round_trips() == 2, counted.counts  # the step, then the changed profile's row
    counted.reset()
    assert " second" in boot.get(f"/ipxe?mac={MAC}").get_data(as_text=True)
    assert counted.round_trips() == 1, counted.counts
