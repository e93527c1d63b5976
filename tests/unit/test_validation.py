"""Unit tests: what reaches an iPXE script or a template is held to strict patterns."""

import pytest

from bootfleet import stages
from bootfleet.errors import TokenError, ValidationError
from bootfleet.tokens import issue_node_token, verify_admin_token, verify_node_token
from bootfleet.validation import (
    check_hostname,
    check_image_ref,
    check_ip,
    check_labels,
    check_name,
    check_safe_text,
    check_serial,
    is_uuid,
    normalize_mac,
    normalize_uuid,
)


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


@pytest.mark.parametrize("text", ["a\nb", "a\rb", "x ${net0/mac}", "x${a}", "tab\there", "a ; reboot", "a || shell",
                                  "a && b", "a #comment", "#x", "a\u2028b", "a\x85b", "lone \ud800", "nul\x00",
                                  ";", "x\x0bv", "x\x0cf"])
def test_safe_text_refuses_what_ipxe_would_interpret(text):
    with pytest.raises(ValidationError):
        check_safe_text(text, "args")


@pytest.mark.parametrize("text", [
    "ds=nocloud-net;s=http://10.0.2.2/config/nodes/x/t/tok/",  # NoCloud's documented form: `;` inside a word
    "autoinstall ds=nocloud-net;s=http://h/ quiet",
    'quote" back\\slash pipe|x a<b c>d tick` dollar$ {braces} semi;colon a#b',
    "root=live:http://h/squashfs.img rd.neednet=1 ip=dhcp",
    "",
])
def test_safe_text_allows_what_ipxe_passes_verbatim(text):
    assert check_safe_text(text, "args") == text


def test_patterns_are_full_matches():
    """`^...$` with re.match let a trailing newline through (a kernel key ending in \\n split the
    iPXE kernel line); every field check now refuses it."""
    for check, good in [(check_hostname, "web-0"), (check_serial, "S1"), (check_name, "web"),
                        (normalize_uuid, "4c4c4544-0042-3510-8052-b4c04f4e4b31"), (check_ip, "10.0.0.1"),
                        (lambda v: check_image_ref(v, "kernel"), "vmlinuz")]:
        check(good)
        if check is not check_hostname and check is not normalize_uuid:  # those two strip whitespace first
            with pytest.raises(ValidationError):
                check(good + "\n")
    with pytest.raises(ValidationError):
        check_labels({"rack": "r1\n"})
    with pytest.raises(ValidationError):
        check_labels({"rack\n": "r1"})


@pytest.mark.parametrize("bad", ["fe80::1%eth0", "fe80::1%\nruncmd: [reboot]", "10.0.0.1\n", "1.2.3", "::1%1"])
def test_ips_refuse_scope_ids_and_garbage(bad):
    with pytest.raises(ValidationError, match="ip"):
        check_ip(bad)


def test_ips_are_canonical():
    assert check_ip("FE80::0001") == "fe80::1"


@pytest.mark.parametrize("bad", ["urn:uuid:4c4c4544-0042-3510-8052-b4c04f4e4b31",
                                 "{4c4c4544-0042-3510-8052-b4c04f4e4b31}", "4c4c454400423510805 2b4c04f4e4b31",
                                 "4c4c4544004235108052b4c04f4e4b31"])
def test_uuids_have_one_spelling(bad):
    assert not is_uuid(bad)
    with pytest.raises(ValidationError):
        normalize_uuid(bad)


@pytest.mark.parametrize("bad", ["", "a b", "-x", "--name=evil", "#x", "x${y}", "x\n", ";"])
def test_image_refs_are_one_safe_word(bad):
    with pytest.raises(ValidationError):
        check_image_ref(bad, "kernel")


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


def test_input_patterns_are_only_ever_full_matches():
    """`^...$` with re.match accepts a trailing newline; every check of input uses fullmatch."""
    import re

    from support import ROOT

    offenders = []
    for path in [*(ROOT / "lib" / "common").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            # re.match / re.search, or a pattern constant (_RE, _IDENT, _WORD, _HEX, ...) with .match
            if re.search(r"\bre\.(match|search)\(|\b_?[A-Z][A-Z_]*\.match\(", line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
