"""Fixtures shared by the functional tests (tests/conftest.py has the database, the
settings fixture, the function clients and the server).

- cloud: the fake VPC, tagging and IAM APIs (tests/fakes/vpc_api.py), bootfleet's settings
  pointing at them (test_provision, test_cleanup; test_vpc has its own, module-wide).
- bind_server, bind, rfc2136: a real BIND (tests/support/dns_bind.py), one per test module;
  rfc2136 also points bootfleet's settings at it (test_dns_rfc2136, test_cleanup).
- fleet: a deployment `rack1` in the BIND zone (test_dns_ibm and test_dashboard have their own).
- srv: `bootfleet serve` as a process (scheduled cleanup off), one per test module, for the
  CLI-as-a-user tests (support.helpers.user_cli); a module needing other settings defines its own.
"""

import pytest
from fakes.vpc_api import API_KEY, FakeCloud
from support.dns_bind import ZONE, BindServer
from support.helpers import make_dns_fleet
from support.provisioning import BASE
from support.server import RunningServer


@pytest.fixture
def cloud(settings):
    """The fake cloud, and bootfleet's settings pointing at it."""
    fake = FakeCloud(boot_seconds=0.4, delete_seconds=0.2).start()
    settings(ibmcloud_api_key=API_KEY, ibm_iam_url=fake.iam_url, vpc_url=fake.vpc_url, tagging_url=fake.tagging_url,
             ibm_timeout=1, ibm_backoff_ms=50, base_url=BASE)
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def bind_server():
    server = BindServer()
    yield server
    server.stop()


@pytest.fixture
def bind(bind_server):
    """The server, with empty zones for this test."""
    bind_server.reset()
    return bind_server


@pytest.fixture
def rfc2136(bind, settings):
    settings(bind.env())
    return bind


@pytest.fixture
def fleet(config, admin, boot):
    """A deployment `rack1` in ZONE whose `api` name spans its ready nodes."""
    return make_dns_fleet(config, admin, ZONE)


@pytest.fixture(scope="module")
def srv(database):
    server = RunningServer(env={"BOOTFLEET_CLEANUP_EVERY": "0"})
    yield server
    server.stop()
