"""Unit tests: what reaches an iPXE script or a template is held to strict patterns."""

import pytest

from bootfleet import stages
from bootfleet.errors import TokenError, ValidationError
from bootfleet.tokens import issue_node_token, verify_admin_token, verify_node_token
from bootfleet.validation import check_hostname, check_labels, check_safe_text, normalize_mac, normalize_uuid


@pytest.mark.parametrize(
    "raw",
    ["52:54:00:ab:cd:ef", "52-54-00-AB-CD-EF", "525400abcdef", "525400ABCDEF", " 52:54:00:ab:cd:ef ", "5254.00ab.cdef"],
)
def test_mac_forms_normalise_to_one(raw):
    assert normalize_mac(raw) == "52:54:00:ab:cd:ef"


@pytest.mark.parametrize(
    "raw",
    ["", "52:54:00:ab:cd", "52:54:00:ab:cd:ef:01", "52:54-00:ab:cd:ef", "zz:54:00:ab:cd:ef", "52:54:00:ab:cd:ef\n",
     "${net0/mac}", "52:54:00:ab:cd:e"],
)
def test_malformed_macs_are_refused(raw):
    with pytest.raises(ValidationError, match="mac"):
        normalize_mac(raw)


def test_uuid_normalises_and_refuses_garbage():
    assert normalize_uuid("4C4C4544-0042-3510-8052-B4C04F4E4B31") == "4c4c4544-0042-3510-8052-b4c04f4e4b31"
    with pytest.raises(ValidationError):
        normalize_uuid("not-a-uuid")


@pytest.mark.parametrize("bad", ["a\nb", "${x}", "-lead", "under_score", "a" * 64, "semi;colon", "sp ace", ""])
def test_bad_hostnames(bad):
    with pytest.raises(ValidationError, match="hostname"):
        check_hostname(bad)


def test_hostnames_are_lower_cased():
    assert check_hostname("Node-1.Example.COM.") == "node-1.example.com"


@pytest.mark.parametrize(
    "labels", [{"rack": "a\nb"}, {"rack": "${evil}"}, {"ra\nck": "1"}, {"rack": 1}, {"k": "$(reboot)"}]
)
def test_bad_labels(labels):
    with pytest.raises(ValidationError, match="labels"):
        check_labels(labels)


@pytest.mark.parametrize("text", ["a\nb", "x ${net0/mac}", "quote\"", "back\\slash", "semi;colon", "tab\there"])
def test_safe_text_refuses_script_injection(text):
    with pytest.raises(ValidationError):
        check_safe_text(text, "args")


def test_node_tokens_are_bound_to_node_version_and_time():
    token = issue_node_token("s", "node-1", 1, ttl=60, now=1000)
    verify_node_token("s", token, "node-1", 1, now=1030)
    for secret, node, version, now in [("x", "node-1", 1, 1030), ("s", "node-2", 1, 1030), ("s", "node-1", 2, 1030),
                                       ("s", "node-1", 1, 1061)]:
        with pytest.raises(TokenError) as e:
            verify_node_token(secret, token, node, version, now=now)
        assert e.value.status == 403
    with pytest.raises(TokenError) as e:
        verify_node_token("s", None, "node-1", 1)
    assert e.value.status == 401


def test_admin_token():
    verify_admin_token("t", "Bearer t")
    with pytest.raises(TokenError) as e:
        verify_admin_token("t", None)
    assert e.value.status == 401
    with pytest.raises(TokenError) as e:
        verify_admin_token("t", "Bearer nope")
    assert e.value.status == 403


@pytest.mark.parametrize(
    "current,reported,moves",
    [("booting", "configuring", True), ("booting", "ready", True), ("installing", "installing", False),
     ("ready", "failed", True), ("configuring", "failed", True)],
)
def test_stage_reports_that_are_accepted(current, reported, moves):
    assert stages.check_report(current, reported) is moves


@pytest.mark.parametrize(
    "current,reported,status",
    [("installing", "booting", 409), ("ready", "configuring", 409), ("failed", "ready", 409),
     ("booting", "nonsense", 400), ("booting", "deleted", 400), ("booting", "registered", 400)],
)
def test_stage_reports_that_are_refused(current, reported, status):
    with pytest.raises(stages.StageError) as e:
        stages.check_report(current, reported)
    assert e.value.status == status
