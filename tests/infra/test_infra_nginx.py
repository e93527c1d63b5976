"""The gateway's routing config (infra/nginx), run by Debian's real nginx on 127.0.0.1.

Self-hosted: nginx with a certificate made here, in front of a real `bootfleet serve`.
Cloud: the same template in functions mode, in front of a function started by the
container's entrypoint, a function that never answers and one that is down.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import time

import pytest
import requests
from infra_support import (
    ROOT,
    SilentUpstream,
    entrypoint,
    free_port,
    make_certificate,
    need,
    render,
    start_nginx,
    worker_user,
    world_readable_tmpdir,
)
from support import ADMIN
from support.helpers import snapshot

KERNEL = b"\x7fELF not really a kernel\n" * 100
GATEWAY = {"BOOTFLEET_GATEWAY_SECRET": "gateway-secret-for-tests"}


@pytest.fixture(scope="module")
def gateway(server):
    """nginx (router mode, TLS) in front of `bootfleet serve`, as on a self-hosted VM."""
    need("nginx", "nginx")
    work = world_readable_tmpdir("bootfleet-nginx-")
    images = work / "images"
    images.mkdir(mode=0o755)
    (images / "vmlinuz").write_bytes(KERNEL)
    cert, key = make_certificate(work)
    http_port, https_port = free_port(), free_port()
    result = render(
        "--standalone", "--listen", "127.0.0.1", "--http-port", str(http_port), "--https-port", str(https_port),
        "--cert", str(cert), "--key", str(key), "--upstream", server.url, "--server-name", "127.0.0.1",
        "--static-root", str(ROOT / "static"), "--images-root", str(images), "--runtime-dir", str(work),
        "--access-log", str(work / "access.log"), "--output", str(work / "nginx.conf"), *worker_user(),
    )
    assert result.returncode == 0, result.stderr
    nginx = start_nginx(work / "nginx.conf", work, https_port)
    gw = type("Gateway", (), {})()
    gw.http = f"http://127.0.0.1:{http_port}"
    gw.https = f"https://127.0.0.1:{https_port}"
    gw.http_port, gw.https_port = http_port, https_port
    gw.cert = str(cert)
    gw.access_log = work / "access.log"
    gw.server = server
    yield gw
    nginx.stop()


def get(gw, path, scheme="https", **kwargs):
    base = gw.https if scheme == "https" else gw.http
    return requests.get(base + path, verify=gw.cert, allow_redirects=False, timeout=10, **kwargs)


# --- TLS ---------------------------------------------------------------------------

def test_https_is_served_with_the_generated_certificate(gateway):
    response = get(gateway, "/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"

    context = ssl.create_default_context(cafile=gateway.cert)
    with socket.create_connection(("127.0.0.1", gateway.https_port)) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            assert tls.getpeercert()["subject"] == ((("commonName", "127.0.0.1"),),)

    # A client that does not trust the certificate is refused (it is not a public CA).
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(gateway.https + "/healthz", timeout=10)


def test_http_is_kept_for_ipxe_and_urls_follow_the_scheme_the_node_used(gateway):
    plain = get(gateway, "/boot/boot.ipxe", scheme="http")
    assert plain.status_code == 200
    assert plain.headers["Content-Type"].startswith("text/plain")
    assert f"chain --autofree http://127.0.0.1:{gateway.http_port}/boot/ipxe?" in plain.text

    secure = get(gateway, "/boot/boot.ipxe")
    assert secure.status_code == 200
    assert f"chain --autofree https://127.0.0.1:{gateway.https_port}/boot/ipxe?" in secure.text


def test_a_client_cannot_claim_https_over_plain_http(gateway):
    spoofed = get(gateway, "/boot/boot.ipxe", scheme="http", headers={"X-Forwarded-Proto": "https"})
    assert f"http://127.0.0.1:{gateway.http_port}/boot/ipxe?" in spoofed.text
    assert "Strict-Transport-Security" not in spoofed.headers


# --- routing -----------------------------------------------------------------------

@pytest.mark.parametrize(
    "path, headers",
    [
        ("/config/api/v1/profiles", ADMIN),
        ("/config/api/v1/profiles", {}),
        ("/status/events", ADMIN),
        ("/boot/ipxe?mac=not-a-mac", {}),
        ("/boot/ipxe", {}),
        ("/dns/", ADMIN),
        ("/cleanup/", ADMIN),
        ("/no/such/place", {}),
    ],
)
def test_each_prefix_reaches_the_same_answer_as_the_router_directly(gateway, clean_db, path, headers):
    through = get(gateway, path, headers=headers)
    direct = requests.get(gateway.server.url + path, headers=headers, timeout=10)
    assert (through.status_code, through.text) == (direct.status_code, direct.text)
    assert through.headers["Content-Type"] == direct.headers["Content-Type"]


def test_the_dashboard_and_images_come_from_disk_not_from_the_router(gateway):
    index = get(gateway, "/")
    assert index.status_code == 200
    assert index.content == (ROOT / "static" / "index.html").read_bytes()
    assert index.headers["Content-Type"].startswith("text/html")

    kernel = get(gateway, "/images/vmlinuz", scheme="http")
    assert kernel.status_code == 200
    assert kernel.content == KERNEL
    assert kernel.headers["Content-Type"] == "application/octet-stream"

    time.sleep(0.2)  # the access log is written after the response
    entries = [json.loads(line) for line in gateway.access_log.read_text().splitlines()]
    served = {e["path"]: e for e in entries}
    # "/" is logged as the file it became.
    assert served["/index.html"]["upstream"] == "" and served["/images/vmlinuz"]["upstream"] == ""
    assert served["/boot/boot.ipxe"]["upstream"] == f"127.0.0.1:{gateway.server.port}"


def test_the_access_log_never_holds_query_strings_where_node_tokens_travel(gateway):
    get(gateway, "/config/nodes/123/user-data?token=secret-node-token", scheme="http")
    time.sleep(0.2)
    log = gateway.access_log.read_text()
    assert "/config/nodes/123/user-data" in log
    assert "secret-node-token" not in log


def test_plain_http_moves_browsers_and_operators_to_https(gateway):
    for path in ("/", "/config/api/v1/profiles?limit=5", "/dns/", "/cleanup/run"):
        response = get(gateway, path, scheme="http", headers=ADMIN)
        assert response.status_code == 308, path
        assert response.headers["Location"] == f"https://127.0.0.1:{gateway.https_port}{path}"
    # ...while what nodes fetch stays on HTTP.
    node = get(gateway, "/config/nodes/123/user-data?token=bad", scheme="http")
    assert node.status_code != 308
    assert node.headers["Content-Type"] == requests.get(
        gateway.server.url + "/config/nodes/123/user-data?token=bad", timeout=10).headers["Content-Type"]


# --- headers and limits ------------------------------------------------------------

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@pytest.mark.parametrize("path", ["/", "/boot/boot.ipxe", "/no/such/place", "/config/api/v1/profiles"])
def test_security_headers_on_every_answer_errors_included(gateway, path):
    response = get(gateway, path)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value, name
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert response.headers["Server"] == "nginx"  # no version


def test_no_hsts_over_plain_http(gateway):
    response = get(gateway, "/boot/boot.ipxe", scheme="http")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Strict-Transport-Security" not in response.headers


def test_a_body_over_the_limit_is_refused_by_nginx_and_changes_nothing(gateway, clean_db, admin):
    before = snapshot(clean_db)
    big = json.dumps({"name": "big", "kernel": "k", "args": "x" * (2 * 1024 * 1024)})
    response = requests.post(gateway.https + "/config/api/v1/profiles", data=big, verify=gateway.cert,
                             headers={**admin, "Content-Type": "application/json"}, timeout=20)
    assert response.status_code == 413
    assert response.json() == {"error": "request body too large: the limit is 1m", "status": 413}
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert snapshot(clean_db) == before

    # Under the limit, the same request reaches the function (which judges it itself).
    small = requests.post(gateway.https + "/config/api/v1/profiles", data="{not json", verify=gateway.cert,
                          headers={**admin, "Content-Type": "application/json"}, timeout=10)
    assert small.status_code == 400
    assert "error" in small.json()


# --- the cloud gateway (functions mode) --------------------------------------------

@pytest.fixture(scope="module")
def cloud_gateway(database):
    """Functions mode: boot is a real function app (the container entrypoint), dns never
    answers, status is down; nginx strips the prefix and sends each app its own Host."""
    need("nginx", "nginx")
    work = world_readable_tmpdir("bootfleet-gateway-")
    boot = entrypoint("boot", free_port(), env=GATEWAY)
    silent = SilentUpstream()
    down = free_port()
    port = free_port()
    result = render(
        "--standalone", "--mode", "functions", "--listen", "127.0.0.1", "--http-port", str(port),
        "--read-timeout", "2", "--connect-timeout", "2", "--static-root", str(ROOT / "static"),
        "--function-upstream", f"dns=http://127.0.0.1:{silent.port}",
        "--function-upstream", f"status=http://127.0.0.1:{down}",
        "--runtime-dir", str(work), "--access-log", "off", "--output", str(work / "nginx.conf"), *worker_user(),
        env={"BOOTFLEET_UPSTREAM_BOOT": boot.url, "BOOTFLEET_UPSTREAM": f"http://127.0.0.1:{down}", **GATEWAY},
    )
    assert result.returncode == 0, result.stderr
    nginx = start_nginx(work / "nginx.conf", work, port)
    yield type("CloudGateway", (), {"url": f"http://127.0.0.1:{port}", "boot": boot})()
    nginx.stop()
    silent.close()
    boot.stop()


def test_cloud_gateway_strips_the_prefix_and_sends_the_apps_own_host(cloud_gateway):
    response = requests.get(cloud_gateway.url + "/boot/boot.ipxe", timeout=10)
    assert response.status_code == 200, response.text
    # The function saw /boot.ipxe with Host = its own address, as Code Engine needs.
    assert f"chain --autofree {cloud_gateway.boot.url}/boot/ipxe?" in response.text


def test_cloud_gateway_trusts_the_ingress_scheme_for_hsts(cloud_gateway):
    behind_tls = requests.get(cloud_gateway.url + "/healthz", headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert behind_tls.json() == {"status": "ok", "service": "gateway"}
    assert behind_tls.headers["Strict-Transport-Security"] == "max-age=31536000"
    plain = requests.get(cloud_gateway.url + "/healthz", timeout=10)
    assert "Strict-Transport-Security" not in plain.headers


def test_cloud_gateway_serves_the_dashboard_itself(cloud_gateway):
    index = requests.get(cloud_gateway.url + "/", timeout=10)
    assert index.content == (ROOT / "static" / "index.html").read_bytes()
    assert requests.get(cloud_gateway.url + "/no-such-file.js", timeout=10).status_code == 404


def test_a_function_that_does_not_answer_times_out_with_a_clear_504(cloud_gateway):
    started = time.monotonic()
    response = requests.get(cloud_gateway.url + "/dns/reconcile", timeout=30)
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.json()["error"] == "the function behind this path did not answer within 2 s"
    assert 1.5 < elapsed < 10


def test_a_function_that_is_down_answers_a_clear_502(cloud_gateway):
    response = requests.get(cloud_gateway.url + "/status/events", timeout=30)
    assert response.status_code == 502
    assert "not answering" in response.json()["error"]


# --- the template and its renderer -------------------------------------------------

def test_the_renderer_knows_the_same_functions_as_the_router():
    import importlib.util

    from bootfleet.web.router import FUNCTIONS

    spec = importlib.util.spec_from_file_location("render", ROOT / "infra" / "nginx" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.FUNCTIONS == FUNCTIONS


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["--cert", "/x.pem"], {}, "--cert and --key go together"),
        (["--upstream", "ftp://x"], {}, "expected http://host[:port]"),
        (["--upstream", "http://x:8080/boot"], {}, "origin only"),
        (["--mode", "functions", "--function-upstream", "boot=http://a"], {}, "no upstream for config"),
        (["--mode", "functions", "--function-upstream", "bogus=http://a"], {}, "NAME one of boot, config"),
        (["--max-body", "lots"], {}, "--max-body"),
        (["--mode", "functions", "--upstream", "http://a"], {"BOOTFLEET_GATEWAY_SECRET": ""}, "BOOTFLEET_GATEWAY_SECRET"),
        (["--boot-rate", "-1"], {}, "--boot-rate"),
        (["--static-root", "static"], {}, "absolute path"),
        (["--mode", "functions", "--upstream", "http://a", "--trusted-hop", "172.30.0.0/33"],
         {"BOOTFLEET_GATEWAY_SECRET": "s"}, "expected a CIDR"),
        (["--mode", "functions", "--upstream", "http://a"], {"BOOTFLEET_GATEWAY_SECRET": "s", "BOOTFLEET_GATEWAY_TRUSTED_HOPS": "0.0.0.0/0"},
         "trusts every address"),
    ],
)
def test_the_renderer_refuses_what_cannot_work_and_says_why(args, env, message):
    result = render(*args, env=env)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("mode_args", [
    ["--mode", "router"],
    ["--mode", "router", "--cert", "/etc/ssl/certs/ssl-cert-snakeoil.pem", "--key", "/k"],
    ["--mode", "functions", "--upstream", "http://127.0.0.1:9"],
])
def test_every_rendering_is_a_valid_nginx_config(tmp_path, mode_args):
    nginx = need("nginx", "nginx")
    if "--cert" in mode_args:
        cert, key = make_certificate(tmp_path)
        mode_args = ["--mode", "router", "--cert", str(cert), "--key", str(key)]
    conf = tmp_path / "nginx.conf"
    result = render("--standalone", *mode_args, "--listen", "127.0.0.1", "--http-port", str(free_port()),
                    "--https-port", str(free_port()), "--static-root", str(ROOT / "static"),
                    "--runtime-dir", str(tmp_path), "--output", str(conf), env=GATEWAY)
    assert result.returncode == 0, result.stderr
    check = subprocess.run([nginx, "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    # The site alone (for a distribution's conf.d/) renders too, without the standalone parts.
    site = render(*mode_args, "--static-root", str(ROOT / "static"), env=GATEWAY)
    assert site.returncode == 0 and "events {" not in site.stdout and "server {" in site.stdout


def test_the_trusted_hops_come_from_the_option_the_environment_or_the_defaults():
    def hops(*args, env=None):
        result = render("--mode", "functions", "--upstream", "http://127.0.0.1:9", *args, env={**GATEWAY, **(env or {})})
        assert result.returncode == 0, result.stderr
        assert "real_ip_recursive on;" in result.stdout and "real_ip_header X-Forwarded-For;" in result.stdout
        return re.findall(r"set_real_ip_from (\S+);", result.stdout)

    assert hops() == ["172.30.0.0/16", "127.0.0.0/8", "10.128.0.0/14", "::1/128"]
    assert hops(env={"BOOTFLEET_GATEWAY_TRUSTED_HOPS": "172.30.0.0/16, 127.0.0.1/8"}) == ["172.30.0.0/16", "127.0.0.0/8"]
    assert hops("--trusted-hop", "10.1.0.0/16", "--trusted-hop", "fd00::/8",
                env={"BOOTFLEET_GATEWAY_TRUSTED_HOPS": "172.30.0.0/16"}) == ["10.1.0.0/16", "fd00::/8"]
    # Self-hosted, nginx is the edge: no header decides the client.
    router = render("--mode", "router")
    assert router.returncode == 0 and "set_real_ip_from" not in router.stdout


def test_the_render_command_in_the_deployment_docs_works(tmp_path):
    """docs/deployment.md's self-hosted render command, run as written (output redirected)."""
    import re
    import shlex

    docs = (ROOT / "docs" / "deployment.md").read_text()
    command = re.search(r"(\S+/render\.py \\\n(?:.*\\\n)*.*)", docs).group(1).replace("\\\n", " ")
    argv = shlex.split(command)[1:]
    argv[argv.index("--output") + 1] = str(tmp_path / "bootfleet.conf")
    result = render(*argv)
    assert result.returncode == 0, result.stderr
    site = (tmp_path / "bootfleet.conf").read_text()
    assert "server_name boot.example.com;" in site and "listen 443 ssl;" in site and "listen 80;" in site
