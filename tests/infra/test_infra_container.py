"""The one container image. There is no container engine here, so: the Containerfile is
read and checked (non-root, entrypoint, PORT, what it copies), and the command it runs
(infra/container/entrypoint.sh) is run for real against the test PostgreSQL, once per
FUNCTION_TARGET, and answers HTTP on $PORT.
"""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest
import requests
from infra_support import ENTRYPOINT, ROOT, entrypoint, free_port, need, wait_http
from support import ADMIN

CONTAINERFILE = ROOT / "Containerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    result, current = [], ""
    for line in CONTAINERFILE.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            word, _, rest = current.strip().partition(" ")
            result.append((word.upper(), rest.strip()))
            current = ""
    return result


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_the_image_is_a_slim_python_that_runs_as_a_non_root_user():
    stage = final_stage()
    base = stage[0][1]
    assert "python:3.11-slim" in base
    users = [args for word, args in stage if word == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit(), "a numeric USER lets the runtime check it is not root (runAsNonRoot)"


def test_the_entrypoint_is_the_script_and_port_8080_is_the_default():
    stage = final_stage()
    entry = json.loads(next(args for word, args in stage if word == "ENTRYPOINT"))
    assert entry[-1] == "/usr/local/bin/bootfleet-entrypoint"
    copies = [args for word, args in stage if word == "COPY"]
    assert any(c.endswith("infra/container/entrypoint.sh /usr/local/bin/bootfleet-entrypoint") for c in copies)
    env = " ".join(args for word, args in stage if word == "ENV")
    assert "PORT=8080" in env and "BOOTFLEET_ROOT=/app" in env
    assert ("EXPOSE", "8080") in stage
    assert not any(word == "CMD" for word, _ in stage), "FUNCTION_TARGET picks the function, not a CMD"


def test_everything_the_image_copies_exists_and_is_not_ignored():
    ignored = [line.strip() for line in (ROOT / ".containerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for word, args in instructions():
        if word != "COPY" or "--from=" in args:
            continue
        sources = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
            assert source not in ignored and source.split("/")[0] not in ignored, f"{source} is in .containerignore"
    for heavy in (".git", ".venv", ".data", "tests"):
        assert heavy in ignored, f"{heavy} would be sent to the build"


def test_the_image_installs_nginx_for_the_gateway_and_what_the_package_needs():
    text = CONTAINERFILE.read_text()
    assert "install -y --no-install-recommends nginx" in text
    assert "pip install ." in text


# --- the entrypoint, run for real ----------------------------------------------------

CHECKS = {
    # target: (path, headers, what only that function answers)
    "boot": ("/boot.ipxe", {}, lambda r: r.status_code == 200 and r.text.startswith("#!ipxe")),
    "config": ("/api/v1/profiles", ADMIN, lambda r: r.status_code == 200 and isinstance(r.json(), (list, dict))),
    "status": ("/events", ADMIN, lambda r: r.status_code == 200),
    "dns": ("/", ADMIN, lambda r: r.status_code < 500 or r.status_code == 501),
    "cleanup": ("/", ADMIN, lambda r: r.status_code < 500 or r.status_code == 501),
}


@pytest.mark.parametrize("target", list(CHECKS))
def test_each_function_target_serves_its_function_on_port(target, database):
    path, headers, ok = CHECKS[target]
    port = free_port()
    proc = entrypoint(target, port)
    try:
        response = wait_http(proc.url + path, headers=headers)
        assert ok(response), f"{target}: {response.status_code} {response.text[:300]}\n{proc.output()}"
        assert proc.proc.poll() is None
    finally:
        proc.stop()


def test_router_target_serves_everything_on_one_port(database):
    proc = entrypoint("router", free_port())
    try:
        assert wait_http(proc.url + "/healthz").json()["status"] == "ok"
        script = requests.get(proc.url + "/boot/boot.ipxe", timeout=10)
        assert script.status_code == 200 and script.text.startswith("#!ipxe")
    finally:
        proc.stop()


def test_gateway_target_renders_nginx_and_routes_to_the_function_apps(database, tmp_path):
    need("nginx", "nginx")
    tmp_path.chmod(0o755)
    shared = {"BOOTFLEET_GATEWAY_SECRET": "a-secret-the-gateway-and-functions-share"}  # Terraform makes one
    boot = entrypoint("boot", free_port(), env=shared)
    try:
        gateway = entrypoint("gateway", free_port(), env={
            "BOOTFLEET_UPSTREAM_BOOT": boot.url, "BOOTFLEET_UPSTREAM": "http://127.0.0.1:9",
            "NGINX_RUNTIME_DIR": str(tmp_path / "nginx"), "BOOTFLEET_GATEWAY_READ_TIMEOUT": "137", **shared,
        })
        try:
            assert wait_http(gateway.url + "/healthz").json() == {"status": "ok", "service": "gateway"}
            # Terraform's request_timeout reaches nginx: how long a function may take to answer
            assert "proxy_read_timeout 137s;" in (tmp_path / "nginx" / "nginx.conf").read_text()
            script = requests.get(gateway.url + "/boot/boot.ipxe", timeout=10)
            assert script.status_code == 200 and script.text.startswith("#!ipxe"), gateway.output()
        finally:
            gateway.stop()
    finally:
        boot.stop()


def test_an_unknown_target_stops_with_a_message_naming_the_choices():
    result = subprocess.run(["/bin/sh", str(ENTRYPOINT)], env={"FUNCTION_TARGET": "bogus", "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 64
    assert "FUNCTION_TARGET must be one of boot, config, status, dns, cleanup, gateway, router" in result.stderr
    assert "'bogus'" in result.stderr
