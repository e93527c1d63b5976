"""The dashboard in a real browser: Debian's Chromium driven by Playwright,
against `bootfleet serve` (the `server` fixture) on a real PostgreSQL.

Nodes are registered through the operator API, get their tokens from the boot
script they would boot with, and report progress to status the way a node does,
while the page is open; the page must follow without a reload. Screenshots go to
test-artifacts/ (desktop and phone).

Also here: CORS on status and config (BOOTFLEET_CORS_ORIGIN), checked both with
plain HTTP and by the browser itself, with the dashboard served from another
origin like a static host (COS behind the CDN) would. How the setting itself is read:
tests/unit/test_settings.py.
"""

from __future__ import annotations

import functools
import http.server
import itertools
import re
import threading
from pathlib import Path

import pytest
import requests
from support import ADMIN, ADMIN_TOKEN, ROOT
from support.server import RunningServer

CHROMIUM = Path("/usr/bin/chromium")
MACS = (f"52:54:00:da:{n // 256:02x}:{n % 256:02x}" for n in itertools.count(1))
ARTIFACTS = ROOT / "test-artifacts"
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
WAIT = 15_000  # ms: how long the page may take to show a change (it polls every 300 ms here)

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python: pip install playwright")
expect = sync_api.expect
# Every expectation waits as long as the page may take to show a change, not Playwright's 5 s: a
# busy CI machine can take longer than that to poll and render (one unguarded check failed once).
expect.set_options(timeout=WAIT)
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="the browser tests need Debian's Chromium: apt-get install -y chromium"
)

PROFILE = {
    "name": "web",
    "kernel": "vmlinuz",
    "initrds": ["initrd.img"],
    "args": "console=ttyS0 bootfleet.status={{ status_url }}",
    "config_format": "cloud-init",
    "config_template": "#cloud-config\nhostname: {{ node.hostname }}\n",
}


# --- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


class Fleet:
    """A deployment and its nodes, made through the API of a running server."""

    def __init__(self, url: str, deployment: str = "rack-a", hosts: tuple[str, ...] = ("web-1", "web-2", "web-3")):
        self.url = url
        self.deployment = deployment
        self.api("POST", "/config/api/v1/profiles", PROFILE, ok=(201, 409))  # 409: an earlier fleet made it
        self.api("POST", "/config/api/v1/deployments", {"name": deployment, "profile": "web", "count": len(hosts)})
        self.nodes: dict[str, dict] = {}
        for i, host in enumerate(hosts, start=1):
            mac = next(MACS)
            node = self.api("POST", "/config/api/v1/nodes", {
                "macs": [mac], "hostname": host, "ip": f"10.0.0.{10 + i}", "deployment": deployment,
            })
            node["token"] = self.token(mac)
            self.nodes[host] = node

    def api(self, method: str, path: str, body=None, ok=(200, 201)):
        resp = requests.request(method, self.url + path, json=body, headers=ADMIN, timeout=10)
        assert resp.status_code in ok, resp.text
        return resp.json()

    def token(self, mac: str) -> str:
        """The node token, from the kernel args of the boot script the node gets."""
        script = requests.get(f"{self.url}/boot/ipxe", params={"mac": mac}, timeout=10)
        assert script.status_code == 200, script.text
        return re.search(r"token=([A-Za-z0-9._~-]+)", script.text).group(1)

    def report(self, host: str, stage: str, message: str = "") -> dict:
        node = self.nodes[host]
        resp = requests.post(
            f"{self.url}/status/nodes/{node['id']}/progress", params={"token": node["token"]},
            json={"stage": stage, "message": message}, timeout=10,
        )
        assert resp.status_code == 200, resp.text
        return resp.json()

    def id(self, host: str) -> str:
        return self.nodes[host]["id"]


@pytest.fixture
def fleet(server, clean_db):
    return Fleet(server.url)


_open_contexts: list = []


@pytest.fixture(autouse=True)
def close_pages():
    """Pages stop polling when their test ends (they would hold locks the next test's TRUNCATE waits on)."""
    yield
    while _open_contexts:
        _open_contexts.pop().close()


def open_dashboard(browser, url: str, token: str = ADMIN_TOKEN, viewport=None, query: str = "?poll=300"):
    """A new browser session (its own sessionStorage) on the dashboard, signed in."""
    context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900})
    _open_contexts.append(context)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.goto(url + "/" + query)
    if token is not None:
        sign_in(page, token)
    return page


def sign_in(page, token: str):
    expect(page.locator("#signin")).to_be_visible()
    page.fill("#token-input", token)
    page.click("#signin-form button[type=submit]")


def node_row(page, node_id: str):
    return page.locator(f'#nodes tr[data-node-id="{node_id}"]')


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


# --- the live dashboard ----------------------------------------------------------------


def test_nodes_advance_live_and_a_failed_node_shows_failed(browser, server, fleet):
    page = open_dashboard(browser, server.url)
    card = page.locator('.deployment[data-deployment="rack-a"]')
    expect(card.locator(".ready-count")).to_have_text("0 of 3", timeout=WAIT)
    # Fetching its boot script made each node `booting`.
    expect(node_row(page, fleet.id("web-1"))).to_have_attribute("data-stage", "booting")
    expect(node_row(page, fleet.id("web-1")).locator(".ip")).to_have_text("10.0.0.11")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    for stage in ("configuring", "installing", "rebooting", "ready"):
        fleet.report("web-1", stage, f"web-1 now {stage}")
        row = node_row(page, fleet.id("web-1"))
        expect(row).to_have_attribute("data-stage", stage, timeout=WAIT)
        expect(row.locator(".stage")).to_have_text(stage)
    expect(card.locator(".ready-count")).to_have_text("1 of 3", timeout=WAIT)
    expect(card.locator(".percent")).to_contain_text("33.3%")
    expect(card.locator('.bar .seg[data-stage="ready"]')).to_have_count(1)

    fleet.report("web-2", "failed", "disk /dev/sda not found")
    failed = node_row(page, fleet.id("web-2"))
    expect(failed).to_have_class(re.compile(r"\bfailed\b"), timeout=WAIT)
    expect(failed.locator(".stage")).to_have_text("failed")
    expect(card.locator(".alert-failed")).to_have_text("1 failed")
    expect(card.locator('.legend li[data-stage="failed"] .count')).to_have_text("1")
    expect(node_row(page, fleet.id("web-1"))).not_to_have_class(re.compile(r"\bfailed\b"))
    expect(page.locator("#events")).to_contain_text("disk /dev/sda not found")
    expect(page.locator("#events li.failed")).to_have_count(1)
    fleet.report("web-3", "configuring")
    expect(node_row(page, fleet.id("web-3"))).to_have_attribute("data-stage", "configuring", timeout=WAIT)
    expect(page.locator("#live")).to_contain_text("live")

    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    assert page.errors == [] and page.console_errors == []
    screenshot(page, "dashboard.png")

    phone = open_dashboard(browser, server.url, viewport={"width": 390, "height": 844})
    row = node_row(phone, fleet.id("web-2"))
    expect(row).to_have_class(re.compile(r"\bfailed\b"), timeout=WAIT)
    expect(phone.locator("#nodes thead")).to_be_hidden()  # cards, not a table, on a phone
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"
    screenshot(phone, "dashboard-phone.png")
    assert phone.errors == []


def test_node_page_shows_its_timeline_and_follows_it(browser, server, fleet):
    fleet.report("web-3", "configuring", "cloud-init started")
    page = open_dashboard(browser, server.url)
    page.locator(f'#nodes tr[data-node-id="{fleet.id("web-3")}"] .host a').click()
    assert page.url.endswith(f"#/nodes/{fleet.id('web-3')}")
    expect(page.locator("#node-title")).to_have_text("web-3", timeout=WAIT)
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("cloud-init started")
    expect(page.locator("#node-details")).to_contain_text("10.0.0.13")
    expect(page.locator("#node-steps .step.current")).to_have_attribute("data-stage", "configuring")

    fleet.report("web-3", "installing", "writing the image")
    expect(page.locator("#node-steps .step.current")).to_have_attribute("data-stage", "installing", timeout=WAIT)
    expect(timeline.locator(".entry").last).to_contain_text("writing the image")
    fleet.report("web-3", "failed", "checksum mismatch")
    expect(page.locator("#node-alert")).to_contain_text("checksum mismatch", timeout=WAIT)
    expect(page.locator("#node-page")).to_have_class(re.compile(r"\bfailed\b"))
    expect(timeline.locator(".entry.failed")).to_have_count(1)
    screenshot(page, "dashboard-node.png")

    page.locator("text=All nodes").click()
    expect(page.locator("#overview")).to_be_visible()
    expect(node_row(page, fleet.id("web-3"))).to_have_attribute("data-stage", "failed")
    assert page.errors == []


def test_event_stream_starts_with_the_last_hour(browser, server, fleet, database):
    with database.transaction() as tx:
        tx.run(
            "INSERT INTO event (node_id, kind, message, source, created_at)"
            " VALUES (:node, 'stage', 'an old story', 'node', now() - interval '2 hours')",
            node=fleet.id("web-1"),
        )
        tx.run("DELETE FROM event WHERE message <> 'an old story'")  # nothing in the last hour
    page = open_dashboard(browser, server.url)
    expect(page.locator("#events-empty")).to_be_visible(timeout=WAIT)
    page.wait_for_timeout(1500)  # several polls
    fleet.report("web-1", "configuring", "a new chapter")
    expect(page.locator("#events")).to_contain_text("a new chapter", timeout=WAIT)
    expect(page.locator("#events li")).to_have_count(1)


def test_filters_show_one_deployment_and_stage(browser, server, fleet):
    Fleet(server.url, deployment="rack-b", hosts=("db-1",))
    fleet.report("web-1", "installing")
    page = open_dashboard(browser, server.url)
    expect(page.locator(".deployment")).to_have_count(2, timeout=WAIT)
    expect(page.locator("#nodes tbody tr")).to_have_count(4)
    page.select_option("#filter-deployment", "rack-b")
    expect(page.locator("#nodes tbody tr")).to_have_count(1)
    expect(page.locator("#nodes tbody tr .host")).to_have_text("db-1")
    page.locator('.deployment[data-deployment="rack-a"] .legend li[data-stage="installing"] a').click()
    expect(page.locator("#nodes tbody tr")).to_have_count(1)
    expect(page.locator("#nodes tbody tr .host")).to_have_text("web-1")
    expect(page.locator("#nodes-summary")).to_contain_text("in rack-a, installing")


def test_admin_token_is_asked_once_per_tab(browser, server, fleet):
    page = open_dashboard(browser, server.url, token="not-the-token")
    expect(page.locator("#signin-error")).to_contain_text("refused", timeout=WAIT)
    assert page.evaluate("sessionStorage.getItem('bootfleet.adminToken')") is None

    sign_in(page, ADMIN_TOKEN)
    expect(page.locator(".deployment")).to_have_count(1, timeout=WAIT)
    page.reload()
    expect(page.locator("#overview")).to_be_visible(timeout=WAIT)  # no second sign-in
    expect(page.locator("#signin")).to_be_hidden()

    other_tab = open_dashboard(browser, server.url, token=None)
    expect(other_tab.locator("#signin")).to_be_visible()

    page.click("#sign-out")
    expect(page.locator("#signin")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('bootfleet.adminToken')") is None


def test_dashboard_loads_nothing_from_elsewhere(server):
    index = requests.get(server.url + "/", timeout=10)
    assert index.status_code == 200
    assert "text/html" in index.headers["Content-Type"]
    for name in ("config.js", "dashboard.js", "dashboard.css"):
        assert f'"{name}"' in index.text
        assert requests.get(f"{server.url}/{name}", timeout=10).status_code == 200
    for path in (ROOT / "static").rglob("*"):
        if path.suffix in (".html", ".js", ".css"):
            text = path.read_text()
            assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), f"{path.name} loads from another host"
            assert not re.search(r"""(@import|url\()\s*["']?(https?:)?//""", text), f"{path.name} loads from another host"


# --- CORS: the dashboard on a static host, the API elsewhere ---------------------------


# What a careful static host sends: no inline script or style, calls only to the API.
CSP = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' http://127.0.0.1:*"


class StaticHost:
    """static/ served by a plain file server on its own origin, like COS behind the CDN."""

    def __init__(self):
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def end_headers(self):
                self.send_header("Content-Security-Policy", CSP)
                super().end_headers()

            def log_message(self, *args):
                pass

        handler = functools.partial(Quiet, directory=str(ROOT / "static"))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def static_hosts():
    hosts = StaticHost(), StaticHost()  # the allowed origin, and another one
    yield hosts
    for host in hosts:
        host.stop()


@pytest.fixture(scope="module")
def cors_server(database, static_hosts):
    """The API on its own origin, allowing the first static host; nodes are stuck after 2 s configuring."""
    srv = RunningServer(env={"BOOTFLEET_CORS_ORIGIN": static_hosts[0].url, "BOOTFLEET_STAGE_TIMEOUTS": "configuring=2"})
    yield srv
    srv.stop()


def test_dashboard_on_a_static_host_calls_the_api_across_origins(browser, cors_server, static_hosts, clean_db):
    allowed, other = static_hosts
    fleet = Fleet(cors_server.url)
    page = open_dashboard(browser, allowed.url, query=f"?poll=300&refresh=1000&api={cors_server.url}")
    card = page.locator('.deployment[data-deployment="rack-a"]')
    expect(card.locator(".ready-count")).to_have_text("0 of 3", timeout=WAIT)
    fleet.report("web-1", "installing")
    expect(node_row(page, fleet.id("web-1"))).to_have_attribute("data-stage", "installing", timeout=WAIT)

    # A node past its stage's timeout is shown stuck, in the list, on the card and on its page.
    fleet.report("web-2", "configuring", "fetching user-data")
    stuck = node_row(page, fleet.id("web-2"))
    expect(stuck).to_have_class(re.compile(r"\bstuck\b"), timeout=WAIT)
    expect(stuck.locator(".stuck-tag")).to_have_text("stuck")
    expect(node_row(page, fleet.id("web-1"))).not_to_have_class(re.compile(r"\bstuck\b"))
    expect(card.locator(".alert-stuck")).to_have_text("1 stuck")
    # The stuck filter (issue 25): the card's "1 stuck" lists just those nodes (the API's ?stuck=true).
    card.locator(".alert-stuck").click()
    expect(page.locator("#nodes tbody tr")).to_have_count(1, timeout=WAIT)
    expect(page.locator("#nodes tbody tr .host")).to_have_text("web-2")
    expect(page.locator("#filter-stage")).to_have_value("stuck")
    expect(page.locator("#nodes-summary")).to_contain_text("in rack-a, stuck")
    expect(page.locator("#events")).to_contain_text("web-2")  # events name nodes by hostname
    screenshot(page, "dashboard-stuck.png")
    stuck.locator(".host a").click()
    expect(page.locator("#node-alert")).to_contain_text("Stuck: in configuring", timeout=WAIT)
    # The API base given once with ?api= is remembered for this origin.
    assert page.evaluate("localStorage.getItem('bootfleet.apiBase')") == cors_server.url
    assert page.errors == []
    assert page.console_errors == [], "CORS or Content-Security-Policy errors"

    refused = open_dashboard(browser, other.url, query=f"?api={cors_server.url}")
    expect(refused.locator("#signin-error")).to_contain_text("BOOTFLEET_CORS_ORIGIN", timeout=WAIT)
    expect(refused.locator("#overview")).to_be_hidden()


@pytest.mark.parametrize("path", ["/status/events", "/config/api/v1/deployments", "/status/nodes/x/progress"])
def test_cors_preflight_is_answered_for_the_allowed_origin_only(cors_server, static_hosts, path):
    allowed, other = static_hosts
    ask = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    yes = requests.options(cors_server.url + path, headers={"Origin": allowed.url, **ask}, timeout=10)
    assert yes.status_code == 204
    assert yes.headers["Access-Control-Allow-Origin"] == allowed.url
    assert "Authorization" in yes.headers["Access-Control-Allow-Headers"]
    assert "Origin" in yes.headers["Vary"]
    assert set(yes.headers["Access-Control-Allow-Methods"].split(", ")) == set(yes.headers["Allow"].split(", "))

    no = requests.options(cors_server.url + path, headers={"Origin": other.url, **ask}, timeout=10)
    assert no.status_code == 204
    assert "Access-Control-Allow-Origin" not in no.headers
    assert "Access-Control-Allow-Methods" not in no.headers


def test_cors_headers_on_answers_and_errors(cors_server, static_hosts, clean_db):
    allowed, other = static_hosts
    url = cors_server.url + "/config/api/v1/deployments"
    ok = requests.get(url, headers={**ADMIN, "Origin": allowed.url}, timeout=10)
    assert ok.status_code == 200
    assert ok.headers["Access-Control-Allow-Origin"] == allowed.url
    # An error the browser must be able to read: a refused token.
    refused = requests.get(url, headers={"Authorization": "Bearer wrong", "Origin": allowed.url}, timeout=10)
    assert refused.status_code == 403
    assert refused.headers["Access-Control-Allow-Origin"] == allowed.url
    # Another origin, no origin at all, or a function that is not for browsers: no CORS header.
    for headers in ({**ADMIN, "Origin": other.url}, ADMIN, {**ADMIN, "Origin": allowed.url + ".evil.example"}):
        resp = requests.get(url, headers=headers, timeout=10)
        assert resp.status_code == 200
        assert "Access-Control-Allow-Origin" not in resp.headers
    boot = requests.get(cors_server.url + "/boot/boot.ipxe", headers={"Origin": allowed.url}, timeout=10)
    assert boot.status_code == 200
    assert "Access-Control-Allow-Origin" not in boot.headers


def test_cors_preflight_of_an_unknown_path_is_a_clear_404(cors_server, static_hosts):
    resp = requests.options(cors_server.url + "/status/no/such/thing", headers={"Origin": static_hosts[0].url}, timeout=10)
    assert resp.status_code == 404
    assert resp.json()["error"] == "no such endpoint: OPTIONS /no/such/thing"


def test_no_cors_header_when_no_origin_is_configured(server):
    resp = requests.options(
        server.url + "/status/events", headers={"Origin": server.url, "Access-Control-Request-Method": "GET"}, timeout=10
    )
    assert resp.status_code == 204
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_nodes_outside_deployments_are_summarised_and_flagged_and_unknown_machines_listed(browser, clean_db):
    """3,000 nodes registered by MAC sat in booting for an hour and none was shown stuck (issue 16):
    the nodes outside deployments get a card like a deployment's, their stuck and failed nodes
    are flagged, and machines that tried to boot unregistered are listed."""
    with RunningServer(env={"BOOTFLEET_STAGE_TIMEOUTS": "booting=1", "BOOTFLEET_CLEANUP_EVERY": "0"}) as srv:
        fleet = Fleet(srv.url, deployment="rack-s", hosts=("in-1",))
        lone = {}
        for host in ("lone-1", "lone-2"):
            mac = next(MACS)
            lone[host] = fleet.api("POST", "/config/api/v1/nodes", {"macs": [mac], "hostname": host, "profile": "web"})
            lone[host]["token"] = fleet.token(mac)  # booting now
        resp = requests.post(f"{srv.url}/status/nodes/{lone['lone-2']['id']}/progress",
                             params={"token": lone["lone-2"]["token"]}, json={"stage": "failed", "message": "no disk"},
                             timeout=10)
        assert resp.status_code == 200, resp.text
        requests.get(f"{srv.url}/boot/ipxe", params={"mac": "52:54:00:db:00:99"}, timeout=10)

        # Stuck is re-read on the page's slow refresh (15 s by default): every second here, so a
        # first read taken before the 1 s timeout passed does not hold the card past WAIT.
        page = open_dashboard(browser, srv.url, query="?poll=300&refresh=1000")
        outside = page.locator('.deployment.standalone[data-deployment="-"]')
        expect(outside).to_contain_text("Outside deployments", timeout=WAIT)
        expect(outside.locator(".alert-failed")).to_have_text("1 failed")
        expect(outside.locator(".alert-stuck")).to_have_text("1 stuck", timeout=WAIT)  # booting past 1 s
        expect(page.locator('#unknown tr[data-mac="52:54:00:db:00:99"]')).to_be_visible()
        outside.locator('.legend li[data-stage="booting"] a').click()
        expect(page.locator("#nodes tbody tr")).to_have_count(1)
        expect(node_row(page, lone["lone-1"]["id"]).locator(".stuck-tag")).to_be_visible()
        expect(page.locator("#nodes-summary")).to_contain_text("outside deployments, booting")
        screenshot(page, "dashboard-outside-deployments.png")
        assert page.errors == [] and page.console_errors == []


def test_a_link_cannot_switch_the_api_without_the_operator(browser, server, clean_db):
    """Before: ?api= was taken at once and the signed-in session's admin token went to that host."""
    page = open_dashboard(browser, server.url)
    expect(page.locator("#overview")).to_be_visible(timeout=WAIT)
    elsewhere = []
    page.on("request", lambda r: r.url.startswith("http://127.0.0.1:9/") and elsewhere.append(r.url))
    page.goto(server.url + "/?api=http://127.0.0.1:9")
    expect(page.locator("#signin")).to_be_visible(timeout=WAIT)
    expect(page.locator("#signin-error")).to_contain_text("asks to use the API at http://127.0.0.1:9")
    expect(page.locator("#api-input")).to_have_value("http://127.0.0.1:9")
    assert page.evaluate("localStorage.getItem('bootfleet.apiBase')") in (None, server.url)
    page.wait_for_timeout(500)
    assert elsewhere == []


# --- roles (issue 23): a viewer token reads everything and is offered nothing it cannot do ------------


def _api_token(url: str, name: str, role: str) -> str:
    resp = requests.post(url + "/config/api/v1/tokens", json={"name": name, "role": role}, headers=ADMIN, timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()["token"]


def test_a_viewer_token_reads_the_dashboard_and_is_offered_no_changes(browser, server, fleet):
    viewer = _api_token(server.url, "wallboard", "viewer")
    fleet.report("web-2", "installing", "writing the disk")
    page = open_dashboard(browser, server.url, token=viewer)
    expect(page.locator(".deployment")).to_have_count(1, timeout=WAIT)
    expect(page.locator("#nodes tbody tr")).to_have_count(3)
    expect(page.locator("#who")).to_have_text("wallboard (viewer)")
    expect(page.locator("#events")).to_contain_text("writing the disk")
    page.locator(f'#nodes tr[data-node-id="{fleet.id("web-2")}"] .host a').click()
    expect(page.locator("#node-title")).to_have_text("web-2")
    expect(page.locator("#node-details")).to_contain_text("10.0.0.12")
    expect(page.locator("#node-reinstall")).to_be_hidden()
    screenshot(page, "dashboard-viewer.png")
    assert page.errors == [] and page.console_errors == []

    operator = open_dashboard(browser, server.url, token=_api_token(server.url, "oncall", "operator"))
    operator.goto(server.url + f"/?poll=300#/nodes/{fleet.id('web-2')}")
    expect(operator.locator("#who")).to_have_text("oncall (operator)", timeout=WAIT)
    button = operator.locator("#node-reinstall")
    expect(button).to_be_visible()
    operator.once("dialog", lambda dialog: dialog.accept())
    button.click()
    expect(operator.locator("#timeline")).to_contain_text("reinstall", timeout=WAIT)
    assert operator.errors == []


def test_a_metrics_token_cannot_sign_in_and_is_told_why(browser, server, fleet):
    page = open_dashboard(browser, server.url, token=_api_token(server.url, "scraper", "metrics"))
    expect(page.locator("#signin-error")).to_contain_text("needs the viewer role", timeout=WAIT)
    assert page.evaluate("sessionStorage.getItem('bootfleet.adminToken')") is None


# --- issue 22: inventory and requirements ------------------------------------------------------


def test_node_page_shows_the_inventory_and_why_a_node_is_held(browser, server, fleet):
    fleet.api("PATCH", "/config/api/v1/profiles/web", {"requirements": {"min_memory_mib": 4096}})
    node = fleet.nodes["web-1"]
    resp = requests.post(f"{server.url}/status/nodes/{node['id']}/inventory", params={"token": node["token"]},
                         json={"cpus": 2, "memory_mib": 1024, "firmware": {"mode": "uefi"},
                               "disks": [{"name": "vda", "size_bytes": 2**33, "serial": "d-1"}]}, timeout=10)
    assert resp.json()["stage"] == "held"
    page = open_dashboard(browser, server.url)
    page.goto(f"{server.url}/?poll=300#/nodes/{node['id']}")
    expect(page.locator("#node-alert")).to_contain_text("Held: its inventory fails its profile's requirements: memory:")
    expect(page.locator("#node-details")).to_contain_text("2 CPUs · 1.0 GiB memory · disks: vda 8.0 GiB #d-1")
    expect(page.locator("#node-details")).to_contain_text("not met: memory: 1.0 GiB, at least 4.0 GiB required")
    fleet.api("POST", f"/config/api/v1/nodes/{node['id']}/requirements/override")
    expect(page.locator("#node-details")).to_contain_text("(overridden by an operator)")
    expect(page.locator("#node-alert")).to_be_hidden()
    # The image write's progress, as the agent reports it: a bar.
    requests.post(f"{server.url}/status/nodes/{node['id']}/progress", params={"token": node["token"]},
                  json={"stage": "installing", "bytes": 3 * 2**20, "total": 12 * 2**20}, timeout=10).raise_for_status()
    expect(page.locator("#node-write")).to_contain_text("25% (3.0 of 12.0 MiB)")
    expect(page.locator("#node-write progress")).to_have_attribute("value", "25")
    screenshot(page, "dashboard-node-held.png")
    assert page.errors == []
