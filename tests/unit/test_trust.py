"""Who is asking (boot/trust.py): a client cannot choose its own address."""

from __future__ import annotations

import pytest

from bootfleet.boot.trust import client, client_address
from bootfleet.errors import TokenError
from bootfleet.settings import Settings
from bootfleet.tokens import hash_secret, is_secret_shaped, new_enrolment_secret, verify_node_token

NETS = {"BOOTFLEET_BOOT_NETWORKS": "10.9.0.0/16,fd00::/8"}


def settings(**env):
    return Settings.from_env({**NETS, **env})


@pytest.mark.parametrize("peer, xff, expected", [
    ("10.9.1.1", "", "10.9.1.1"),
    ("203.0.113.7", "10.9.1.1", "203.0.113.7"),  # not a trusted proxy: its header is ignored
    ("::ffff:10.9.1.1", "", "10.9.1.1"),
])
def test_without_a_trusted_proxy_the_peer_is_the_client(peer, xff, expected):
    assert str(client_address(peer, {"X-Forwarded-For": xff}, settings())) == expected


@pytest.mark.parametrize("xff, expected", [
    ("10.9.1.1", "10.9.1.1"),
    ("10.9.1.1, 203.0.113.7", "203.0.113.7"),  # a client's own claim comes first: the rightmost untrusted wins
    ("203.0.113.7, 127.0.0.1", "203.0.113.7"),  # a second trusted hop is skipped
    ("garbage", "None"),  # a garbled chain: no address, so no network
    ("", "127.0.0.1"),
])
def test_a_trusted_proxy_s_forwarded_for_is_read_from_the_right(xff, expected):
    s = settings(BOOTFLEET_TRUSTED_PROXIES="127.0.0.1/32")
    assert str(client_address("127.0.0.1", {"X-Forwarded-For": xff}, s)) == expected


def test_the_gateway_secret_makes_its_client_header_believed_and_nothing_else_does():
    s = settings(BOOTFLEET_GATEWAY_SECRET="g" * 32)
    headers = {"X-Bootfleet-Client": "10.9.7.7"}
    assert str(client_address("127.0.0.1", {**headers, "X-Bootfleet-Gateway": "g" * 32}, s)) == "10.9.7.7"
    assert str(client_address("127.0.0.1", {**headers, "X-Bootfleet-Gateway": "h" * 32}, s)) == "127.0.0.1"
    assert str(client_address("127.0.0.1", headers, settings())) == "127.0.0.1"


def test_boot_networks_decide_trust_and_unset_means_none():
    assert client("10.9.200.1", {}, settings()).trusted
    assert client("fd00::1", {}, settings()).trusted
    assert not client("10.10.0.1", {}, settings()).trusted
    assert not client("10.9.0.1", {}, Settings.from_env({})).trusted
    assert not client("10.9.0.1", {}, Settings.from_env({"BOOTFLEET_BOOT_NETWORKS": "none"})).trusted
    assert Settings.from_env({}).boot_networks is None  # serve fills in loopback only then


def test_enrolment_secrets_are_fresh_and_stored_as_digests():
    a, b = new_enrolment_secret(), new_enrolment_secret()
    assert a != b and is_secret_shaped(a) and len(a) == 43
    assert hash_secret(a) != hash_secret(b) and len(hash_secret(a)) == 64 and a not in hash_secret(a)
    assert not is_secret_shaped("short") and not is_secret_shaped("a" * 16 + "\n")


@pytest.mark.parametrize("token", ["².x", "1" * 4301 + ".x", "١٢٣.x", "-5.x", ".x", "12."])
def test_malformed_tokens_are_a_403_not_a_crash(token):
    with pytest.raises(TokenError) as e:
        verify_node_token("s", token, "00000000-0000-0000-0000-000000000000", 1)
    assert e.value.status == 403 and "malformed" in str(e.value)
