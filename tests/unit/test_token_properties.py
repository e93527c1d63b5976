"""Property tests (hypothesis) for node tokens, admin tokens and enrolment secrets: any
text a client sends is a TokenError (401/403) or a match, never a crash; a token opens
only its own node and install; a secret's digest never shows the secret."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootfleet.errors import TokenError
from bootfleet.tokens import (
    hash_secret,
    is_secret_shaped,
    issue_node_token,
    new_enrolment_secret,
    verify_admin_token,
    verify_node_token,
)

NODE = "0b7f4a8e-0000-4000-8000-000000000001"
OTHER = "0b7f4a8e-0000-4000-8000-000000000002"
ANY = st.text() | st.text(alphabet="0123456789.²³¹٠١-_=+/ abcXYZ\x00\ud800")


@given(ANY)
def test_any_presented_node_token_is_refused_cleanly(token):
    with pytest.raises(TokenError) as e:
        verify_node_token("secret", token, NODE, 1)
    assert e.value.status in (401, 403)


@given(ANY)
def test_any_authorization_header_is_refused_cleanly(header):
    with pytest.raises(TokenError) as e:
        verify_admin_token("the-admin-token", header)
    assert e.value.status in (401, 403)


@given(st.integers(min_value=1, max_value=2**31 - 1), st.integers(min_value=60, max_value=10**7))
def test_a_token_opens_only_its_node_and_install(version, ttl):
    token = issue_node_token("secret", NODE, version, ttl)
    verify_node_token("secret", token, NODE, version)  # its own: accepted
    for node, v, key in ((OTHER, version, "secret"), (NODE, version + 1, "secret"), (NODE, version, "other")):
        with pytest.raises(TokenError):
            verify_node_token(key, token, node, v)


@given(st.integers(min_value=1, max_value=10**6), st.text(alphabet="0123456789abcdefABCDEF-_", min_size=1))
def test_a_changed_signature_or_expiry_is_refused(version, junk):
    token = issue_node_token("secret", NODE, version, 3600)
    expiry, _, signature = token.partition(".")
    for forged in (f"{int(expiry) + 1}.{signature}", f"{expiry}.{signature[:-1]}{junk}"):
        if forged != token:
            with pytest.raises(TokenError):
                verify_node_token("secret", forged, NODE, version)


def test_an_expired_token_is_refused():
    token = issue_node_token("secret", NODE, 1, 10, now=time.time() - 100)
    with pytest.raises(TokenError, match="expired"):
        verify_node_token("secret", token, NODE, 1)


@given(st.data())
def test_enrolment_secrets_are_secret_shaped_and_their_digests_say_nothing(data):
    secret = new_enrolment_secret()
    assert is_secret_shaped(secret)
    digest = hash_secret(secret)
    assert len(digest) == 64 and secret not in digest and secret[:8] not in digest
    other = data.draw(st.text(min_size=1))
    assert other == secret or hash_secret(other) != digest
