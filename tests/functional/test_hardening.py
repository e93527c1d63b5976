"""Each finding of the hostile-input review (issue 13), through the real functions and database:
a 4xx that says what was wrong, never a 5xx, and the database unchanged."""

from __future__ import annotations

import json
import re

import pytest
from support import ADMIN
from support.helpers import make_node, make_profile, snapshot, token_from_script

URN = "urn:uuid:4c4c4544-0042-3510-8052-b4c04f4e4b31"
BRACES = "{4c4c4544-0042-3510-8052-b4c04f4e4b31}"
HUGE = str(10**20)


def _refused(resp, status=400, needle=""):
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True))
    assert needle in resp.get_data(as_text=True)


@pytest.mark.parametrize("path", [
    f"/api/v1/nodes/{URN}", f"/api/v1/nodes/{BRACES}", f"/api/v1/deployments/{URN}",
    f"/api/v1/profiles/{BRACES}", f"/api/v1/deployments/{BRACES}",
])
def test_urn_and_brace_ids_are_404_not_500(config, path):
    _refused(config.get(path, headers=ADMIN), 404, "not found")


@pytest.mark.parametrize("path", [f"/nodes/{URN}", f"/nodes/{BRACES}/events", f"/deployments/{URN}"])
def test_status_urn_and_brace_ids_are_404(status, path):
    _refused(status.get(path, headers=ADMIN), 404)


@pytest.mark.parametrize("query,needle", [
    (f"?offset={HUGE}", "offset"), ("?limit=%C2%B2", "limit"), ("?offset=%C2%B2", "offset"), ("?limit=0", "limit"),
    ("?stage=bogus", "stage"),
])
def test_listing_parameters(config, query, needle):
    _refused(config.get(f"/api/v1/nodes{query}", headers=ADMIN), 400, needle)


@pytest.mark.parametrize("query,needle", [
    (f"?since={HUGE}", "since"), ("?limit=%C2%B2", "limit"), ("?since=%C2%B2", "since"),
    ("?since=0001-01-01T00:00:00%2B23:59", "since"),
])
def test_event_feed_parameters(status, query, needle):
    _refused(status.get(f"/events{query}", headers=ADMIN), 400, needle)


def test_the_largest_offset_and_since_still_answer(config, status):
    assert config.get(f"/api/v1/nodes?offset={2**63 - 1}", headers=ADMIN).status_code == 200
    assert status.get(f"/events?since={2**63 - 1}", headers=ADMIN).json["events"] == []


@pytest.mark.parametrize("body,needle", [
    ('{"name": "p", "kernel": "k", "metadata": {"x": Infinity}}', "Infinity"),
    ('{"name": "p", "kernel": "k", "metadata": {"x": NaN}}', "NaN"),
    ('{"name": "p", "kernel": "k", "metadata": {"x": 1e999}}', "too large"),
    ('{"name": "p", "kernel": "k", "metadata": {"x": "\\ud800"}}', "surrogate"),
    ('{"name": "p", "kernel": "k", "config_template": "\\udfff"}', "surrogate"),
    ('{"name": "p", "kernel": "k", "metadata": ' + "[" * 100000 + "]" * 100000 + "}", "nested"),
])
def test_profile_bodies_that_no_column_can_hold(config, clean_db, body, needle):
    before = snapshot(clean_db)
    _refused(config.post("/api/v1/profiles", data=body, content_type="application/json", headers=ADMIN), 400, needle)
    assert snapshot(clean_db) == before


@pytest.mark.parametrize("extra", [
    '"placement": {"memory": "\\ud800"}', '"spec": {"x": Infinity}', '"spec": {"x": "\\udbff"}',
    '"placement": {"memory": "\u00b2"}',
])
def test_deployment_bodies_that_no_column_can_hold(config, clean_db, extra):
    make_profile(config, ADMIN)
    before = snapshot(clean_db)
    body = '{"name": "d", "profile": "worker", "provider": "local", ' + extra + "}"
    _refused(config.post("/api/v1/deployments", data=body, content_type="application/json", headers=ADMIN), 400)
    assert snapshot(clean_db) == before


@pytest.mark.parametrize("secret", [5, ["s"], {"a": 1}, "\ud800", None, True])
def test_the_cron_secret_of_any_type_is_a_401_or_403_never_500(function_apps, clean_db, settings, secret):
    settings(cron_secret="the-cron-secret")
    client = function_apps["cleanup"].test_client()
    body = json.dumps({"secret": secret})
    resp = client.post("/run", data=body, content_type="application/json")
    assert resp.status_code in (401, 403), resp.get_data(as_text=True)
    assert client.post("/run", data=b"[" * 100000, content_type="application/json").status_code == 401


def test_an_ip_with_a_scope_id_cannot_inject_yaml(config, clean_db):
    """`fe80::1%\\nruncmd: ...` passed ipaddress (scope ids may hold anything) and added a line to user-data."""
    make_profile(config, ADMIN)
    before = snapshot(clean_db)
    for ip in ["fe80::1%\nruncmd: [reboot]", "fe80::1%eth0", "10.0.0.1\n"]:
        _refused(config.post("/api/v1/nodes", json={"macs": ["52:54:00:00:00:09"], "ip": ip}, headers=ADMIN), 400, "ip")
    assert snapshot(clean_db) == before


@pytest.mark.parametrize("field,value", [
    ("kernel", "vmlinuz\ninitrd evil"), ("kernel", "--name=x"), ("kernel", "a b"), ("initrds", ["x\n"]),
    ("args", "quiet\nshell"), ("args", "quiet ${net0/mac}"), ("args", "quiet || shell"), ("args", "a #c"),
])
def test_profile_fields_that_would_change_the_ipxe_script(config, clean_db, field, value):
    before = snapshot(clean_db)
    body = {"name": "p", "kernel": "vmlinuz", field: value}
    _refused(config.post("/api/v1/profiles", json=body, headers=ADMIN), 400, field)
    assert snapshot(clean_db) == before


def test_nocloud_kernel_args_with_a_semicolon_boot(config, boot, clean_db):
    """The documented NoCloud form was refused because of its `;`; iPXE passes it through verbatim."""
    args = "autoinstall ds=nocloud-net;s={{ cloud_init_url }} console=ttyS0"
    make_profile(config, ADMIN, args=args)
    node = make_node(config, ADMIN, profile="worker")
    script = boot.get("/ipxe?mac=52:54:00:00:00:01").get_data(as_text=True)
    token = re.search(r"/t/([A-Za-z0-9._-]+)/", script).group(1)
    expected = f"autoinstall ds=nocloud-net;s=http://localhost/config/nodes/{node['id']}/t/{token}/ console=ttyS0"
    assert f"kernel http://localhost/images/vmlinuz {expected} initrd=initrd.img || goto failed" in script.splitlines()


def test_a_host_header_that_is_not_a_host_is_refused(config, boot, clean_db):
    """The Host header goes into the URLs of boot scripts and configs when BOOTFLEET_BASE_URL is not set."""
    make_profile(config, ADMIN)
    make_node(config, ADMIN, profile="worker")
    for host in ["evil${net0/mac}", "a || shell", "h #x"]:
        _refused(boot.get("/ipxe?mac=52:54:00:00:00:01", headers={"Host": host}), 400, "Host")


def test_templates_past_the_limits_are_refused_when_saved(config, clean_db):
    before = snapshot(clean_db)
    for template in ["{{ 9**(9**9) }}", "{{ 'a' * 100000000 }}"]:
        body = {"name": "p", "kernel": "k", "config_format": "cloud-init", "config_template": template}
        _refused(config.post("/api/v1/profiles", json=body, headers=ADMIN), 400, "config_template")
    _refused(config.post("/api/v1/profiles", json={"name": "p", "kernel": "k", "args": "{{ 9**(9**9) }}"},
                         headers=ADMIN), 400, "args")
    assert snapshot(clean_db) == before


def test_a_template_past_a_limit_at_render_time_is_a_500_with_the_reason(config, boot, clean_db):
    """A limit that only real node data reaches (the sample node at save time does not): 500 naming it."""
    template = "#cloud-config\n{{ 'a' * (node.labels.n | int) }}\n"
    make_profile(config, ADMIN, config_template=template)
    node = make_node(config, ADMIN, profile="worker", labels={"n": "100000000"})
    token = token_from_script(boot.get("/ipxe?mac=52:54:00:00:00:01").get_data(as_text=True))
    resp = config.get(f"/nodes/{node['id']}/user-data?token={token}")
    _refused(resp, 500, "100000000 times")
