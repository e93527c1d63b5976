"""The unified router over real HTTP: `bootfleet serve` as a real process."""

import requests
from support import ADMIN


def test_health_and_dashboard(server):
    assert requests.get(server.url + "/healthz").json() == {"status": "ok"}
    page = requests.get(server.url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]


def test_prefixes_route_to_their_function_without_redirects(server):
    chain = requests.get(server.url + "/boot/boot.ipxe", allow_redirects=False)
    assert chain.status_code == 200
    assert chain.headers["Content-Type"].startswith("text/plain")
    assert chain.text.startswith("#!ipxe")
    assert f"chain --autofree {server.url}/boot/ipxe?mac=${{netX/mac}}" in chain.text
    for path in ("/boot", "/config", "/status", "/config/", "/status/"):
        resp = requests.get(server.url + path, allow_redirects=False)
        assert resp.status_code == 404, (path, resp.status_code)
    for path in ("/dns/reconcile", "/cleanup/run"):  # POST only: a clear 405, not a redirect
        resp = requests.get(server.url + path, allow_redirects=False)
        assert resp.status_code == 405 and "allowed: POST" in resp.json()["error"], path


def test_registered_mac_gets_its_script_over_http(server):
    profile = {"name": "router-test", "kernel": "vmlinuz", "initrds": ["initrd.img"], "args": "console=ttyS0"}
    requests.post(server.url + "/config/api/v1/profiles", json=profile, headers=ADMIN).raise_for_status()
    node = requests.post(
        server.url + "/config/api/v1/nodes",
        json={"macs": ["52:54:00:aa:bb:01"], "profile": "router-test"},
        headers=ADMIN,
    )
    assert node.status_code == 201, node.text
    script = requests.get(server.url + "/boot/ipxe", params={"mac": "52-54-00-AA-BB-01"})
    assert script.status_code == 200
    assert f"kernel {server.url}/images/vmlinuz console=ttyS0" in script.text
    assert requests.get(server.url + f"/config/api/v1/nodes/{node.json()['id']}", headers=ADMIN).json()[
        "stage"] == "booting"


def test_every_answer_carries_the_gateways_security_headers(server):
    """Before: the gateway sent a Content-Security-Policy, `bootfleet serve` none."""
    import re

    from support import ROOT

    from bootfleet.web.router import SECURITY_HEADERS

    nginx = (ROOT / "infra" / "nginx" / "bootfleet.conf.j2").read_text()
    gateway = dict(re.findall(r'add_header ([\w-]+) "([^"]*)" always;', nginx))
    assert dict(SECURITY_HEADERS) == {k: v for k, v in gateway.items() if k != "Strict-Transport-Security"}
    for path in ["/", "/dashboard.js", "/healthz", "/boot/boot.ipxe", "/config/api/v1/profiles", "/nope"]:
        resp = requests.get(server.url + path, timeout=10)
        for name, value in SECURITY_HEADERS:
            assert resp.headers.get(name) == value, (path, name)
