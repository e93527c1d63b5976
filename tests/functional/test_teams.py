"""Scoped API tokens and roles (issue 23, part 1), through the CLI and the HTTP API of a running
`bootfleet serve`: a viewer changes nothing (every mutating operation of the OpenAPI document
tried), a wrong role is a 403 naming the role needed, a revoked or expired token stops at once."""

from __future__ import annotations

import re
import time

import pytest
import requests
from support import ADMIN
from support.helpers import PROFILE, snapshot

from functional.test_cli_operator import run

API = "/config/api/v1"
MUTATING = {"post", "put", "patch", "delete"}


def call(srv, method, path, token=None, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else ADMIN
    return requests.request(method, srv.url + path, headers=headers, timeout=30, **kwargs)


def make_token(srv, name, role, **extra):
    resp = call(srv, "POST", f"{API}/tokens", json={"name": name, "role": role, **extra})
    assert resp.status_code == 201, resp.text
    return resp.json()["token"]


def fill(path: str) -> str:
    """A path of the OpenAPI document with its parameters filled in (the role is checked first)."""
    return re.sub(r"\{[^}]+\}", "x", path).replace("/x/adopt", "/52:54:00:00:00:01/adopt")


def test_token_create_list_revoke_through_the_cli(srv, tmp_path, clean_db):
    created = run(srv, "token", "create", "--name", "grafana", "--role", "viewer", "--expires", "30d", cwd=tmp_path)
    token = created.stdout.strip()
    assert token.startswith("bft_") and "shown this once" in created.stderr
    listed = run(srv, "token", "list", cwd=tmp_path).stdout
    assert "grafana" in listed and "viewer" in listed and token not in listed
    with clean_db.transaction() as tx:  # only its hash is stored
        stored = tx.all("SELECT * FROM api_token")
    assert len(stored) == 1 and token not in str(stored) and stored[0]["expires_at"] is not None
    assert call(srv, "GET", f"{API}/nodes", token).status_code == 200
    mine = call(srv, "GET", f"{API}/whoami", token).json()
    assert mine == {"name": "grafana", "role": "viewer", "bootstrap": False}
    # The viewer's CLI can read but not change, and says which role it needs.
    as_viewer = {"BOOTFLEET_ADMIN_TOKEN": token}
    assert run(srv, "node", "list", cwd=tmp_path, env=as_viewer).returncode == 0
    refused = run(srv, "node", "create", "--mac", "52:54:00:aa:00:01", cwd=tmp_path, env=as_viewer, check=False)
    assert "403" in refused.stderr and "operator role" in refused.stderr and "not this server's" not in refused.stderr
    assert "last_used_at" in run(srv, "token", "list", "--json", cwd=tmp_path).stdout

    run(srv, "token", "revoke", "grafana", "--yes", cwd=tmp_path)
    stopped = call(srv, "GET", f"{API}/nodes", token)  # at once: no cache in between
    assert stopped.status_code == 403 and "revoked" in stopped.json()["error"]
    assert "grafana" not in run(srv, "token", "list", cwd=tmp_path).stdout
    assert "grafana" in run(srv, "token", "list", "--revoked", cwd=tmp_path).stdout
    # The name may be used again; the old token stays dead.
    fresh = make_token(srv, "grafana", "viewer")
    assert call(srv, "GET", f"{API}/nodes", fresh).status_code == 200
    assert call(srv, "GET", f"{API}/nodes", token).status_code == 403


def test_a_viewer_changes_nothing_on_any_mutating_operation_of_the_openapi_document(srv, clean_db):
    viewer = make_token(srv, "dash", "viewer")
    call(srv, "POST", f"{API}/profiles", json=PROFILE)
    before = snapshot(clean_db)
    document = requests.get(srv.url + f"{API}/openapi.json", timeout=30).json()
    tried = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            role = operation.get("x-bootfleet-role")
            if method == "get":
                if role in ("viewer", "metrics"):  # what it may read, it reads
                    resp = call(srv, "GET", fill(path), viewer)
                    assert resp.status_code != 403, (path, resp.text)
                continue
            if method not in MUTATING or role is None:  # a node's own requests take a node token
                continue
            assert role in ("operator", "admin"), (method, path, role)
            resp = call(srv, method.upper(), fill(path), viewer, json={})
            assert resp.status_code == 403, (method, path, resp.status_code, resp.text)
            assert f"needs the {role} role" in resp.json()["error"] and "'dash' has the viewer role" in resp.json()[
                "error"]
            tried += 1
    assert tried >= 20
    assert snapshot(clean_db) == before


def test_roles_operator_and_metrics(srv, clean_db):
    operator = make_token(srv, "ci", "operator")
    scraper = make_token(srv, "prometheus", "metrics")
    assert call(srv, "POST", f"{API}/profiles", operator, json=PROFILE).status_code == 201
    refused = call(srv, "POST", f"{API}/tokens", operator, json={"name": "more", "role": "admin"})
    assert refused.status_code == 403 and "needs the admin role" in refused.json()["error"]
    assert call(srv, "GET", f"{API}/tokens", operator).status_code == 403
    for name in ("boot", "config", "status", "dns", "cleanup"):
        assert call(srv, "GET", f"/{name}/metrics", scraper).status_code == 200
    refused = call(srv, "GET", f"{API}/nodes", scraper)
    assert refused.status_code == 403 and "needs the viewer role" in refused.json()["error"]
    assert call(srv, "POST", "/cleanup/run?dry_run=true", operator).status_code == 200
    assert call(srv, "POST", "/cleanup/run?dry_run=true", scraper).status_code == 403
    # The document says which role each operation needs.
    document = call(srv, "GET", f"{API}/openapi.json").json()
    assert document["paths"]["/config/api/v1/tokens"]["post"]["x-bootfleet-role"] == "admin"
    assert document["paths"]["/config/api/v1/profiles"]["get"]["x-bootfleet-role"] == "viewer"
    assert document["paths"]["/config/api/v1/profiles"]["post"]["x-bootfleet-role"] == "operator"
    assert document["paths"]["/config/metrics"]["get"]["x-bootfleet-role"] == "metrics"
    assert "operator role" in document["paths"]["/cleanup/run"]["post"]["description"]


def test_an_expired_token_stops(srv, clean_db):
    token = make_token(srv, "short", "viewer", expires_in=1)
    assert call(srv, "GET", f"{API}/nodes", token).status_code == 200
    time.sleep(1.5)
    resp = call(srv, "GET", f"{API}/nodes", token)
    assert resp.status_code == 403 and "expired" in resp.json()["error"]


@pytest.mark.parametrize("body,status,words", [
    ({"name": "x", "role": "root"}, 400, "role"),
    ({"name": "has space", "role": "viewer"}, 400, "name"),
    ({"name": "x", "role": "viewer", "expires_in": 0}, 400, "expires_in"),
    ({"name": "x", "role": "viewer", "token": "mine"}, 400, "token"),
    ({"role": "viewer"}, 400, "name"),
])
def test_bad_token_requests_are_4xx_and_change_nothing(srv, clean_db, body, status, words):
    resp = call(srv, "POST", f"{API}/tokens", json=body)
    assert resp.status_code == status and words in resp.json()["error"], resp.text
    with clean_db.transaction() as tx:
        assert tx.scalar("SELECT count(*) FROM api_token") == 0


def test_a_second_live_token_of_the_same_name_is_a_409_and_unknown_tokens_are_refused(srv, clean_db):
    make_token(srv, "twice", "viewer")
    resp = call(srv, "POST", f"{API}/tokens", json={"name": "twice", "role": "admin"})
    assert resp.status_code == 409 and "twice" in resp.json()["error"]
    assert call(srv, "DELETE", f"{API}/tokens/nope").status_code == 404
    forged = call(srv, "GET", f"{API}/nodes", "bft_" + "A" * 43)
    assert forged.status_code == 403 and "not valid" in forged.json()["error"]
    assert call(srv, "GET", f"{API}/nodes", "wrong").status_code == 403
    assert requests.get(srv.url + f"{API}/nodes", timeout=10).status_code == 401
