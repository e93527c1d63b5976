"""Roles, the webhook allow-list and signature (issue 23): pure logic, no database."""

import hashlib
import hmac

import pytest

from bootfleet import roles
from bootfleet.errors import BadRequestError, SettingsError
from bootfleet.notify import backoff, check_url, sign
from bootfleet.settings import Settings


def test_each_role_may_do_what_the_roles_below_it_may():
    assert roles.allows("admin", "operator") and roles.allows("operator", "viewer") and roles.allows("viewer", "metrics")
    assert not roles.allows("viewer", "operator") and not roles.allows("metrics", "viewer")
    assert not roles.allows("root", "metrics")
    assert roles.default_role(("GET",)) == "viewer" and roles.default_role(("PATCH", "PUT")) == "operator"


def test_the_signature_is_githubs_convention():
    body = b'{"id":"d1","event":"node.ready"}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign("s3cret", body) == "sha256=" + expected


ALLOW = Settings.from_env({"BOOTFLEET_WEBHOOK_ALLOW": "hooks.example.com, *.ops.example.com,10.1.0.0/16,::1/128"})


@pytest.mark.parametrize("url", ["https://hooks.example.com/x", "https://a.ops.example.com/", "http://10.1.2.3:8080/h",
                                 "http://[::1]:9/", "https://HOOKS.example.com./x"])
def test_urls_on_the_allow_list(url):
    assert check_url(url, ALLOW) == url


@pytest.mark.parametrize("url,words", [
    ("https://evil.example.com/", "not on BOOTFLEET_WEBHOOK_ALLOW"),
    ("https://ops.example.com.evil.net/", "not on"),
    ("https://xops.example.com/", "not on"),
    ("http://10.2.0.1/", "not on"),
    ("http://127.0.0.1/", "not on"),
    ("ftp://hooks.example.com/", "http(s)"),
    ("https://u:p@hooks.example.com/", "without user"),
    ("hooks.example.com", "http(s)"),
])
def test_urls_off_the_allow_list(url, words):
    with pytest.raises(BadRequestError, match=r".*") as e:
        check_url(url, ALLOW)
    assert words in e.value.message


def test_no_allow_list_no_webhooks_and_a_bad_entry_is_a_settings_error():
    with pytest.raises(BadRequestError) as e:
        check_url("https://hooks.example.com/", Settings.from_env({}))
    assert "BOOTFLEET_WEBHOOK_ALLOW" in e.value.message
    with pytest.raises(SettingsError):
        Settings.from_env({"BOOTFLEET_WEBHOOK_ALLOW": "https://hooks.example.com/"})


def test_backoff_doubles_up_to_an_hour_then_gives_up():
    s = Settings.from_env({"BOOTFLEET_WEBHOOK_BACKOFF": "30", "BOOTFLEET_WEBHOOK_MAX_ATTEMPTS": "10"})
    assert [backoff(n, s) for n in (1, 2, 3)] == [30, 60, 120]
    assert backoff(9, s) == 3600 and backoff(10, s) is None
