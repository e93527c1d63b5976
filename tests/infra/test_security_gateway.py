"""Attacker tests (issue 12): the real gateway (nginx in functions mode, as deployed on
Code Engine) in front of the real function apps (the container's entrypoint), with a
boot network of 10.9.0.0/16. Clients are told apart as Code Engine's ingress tells
them: by the last X-Forwarded-For entry it appends (what the gateway believes).
"""

from __future__ import annotations

import re
import secrets
import time

import pytest
import requests
from infra_support import entrypoint, free_port, need, render, start_nginx, worker_user, world_readable_tmpdir
from support import ADMIN
from support.helpers import PROFILE, token_from_script

GATEWAY_SECRET = secrets.token_hex(24)
RATE = 5  # /boot/ requests a second per client at the gateway (a burst of 10)
TRUSTED = "10.9.1.5"  # inside the boot network
OUTSIDE = "203.0.113.7"  # an attacker on the internet
MAC_A, MAC_B = "52:54:00:aa:00:01", "52:54:00:bb:00:02"


@pytest.fixture(scope="module")
def world(database):
    need("nginx", "nginx")
    work = world_readable_tmpdir("bootfleet-attack-")
    env = {"BOOTFLEET_GATEWAY_SECRET": GATEWAY_SECRET, "BOOTFLEET_BOOT_NETWORKS": "10.9.0.0/16",
           "BOOTFLEET_LOG_LEVEL": "INFO", "BOOTFLEET_RETRY_SECONDS": "5"}
    apps = {name: entrypoint(name, free_port(), env=env) for name in ("boot", "config", "status")}
    port = free_port()
    result = render(
        "--standalone", "--mode", "functions", "--listen", "127.0.0.1", "--http-port", str(port),
        "--upstream", f"http://127.0.0.1:{free_port()}", "--runtime-dir", str(work),
        "--access-log", str(work / "access.log"), "--output", str(work / "nginx.conf"), *worker_user(),
        env={**{f"BOOTFLEET_UPSTREAM_{n.upper()}": app.url for n, app in apps.items()},
             "BOOTFLEET_GATEWAY_SECRET": GATEWAY_SECRET, "BOOTFLEET_BOOT_RATE_LIMIT": str(RATE)},
    )
    assert result.returncode == 0, result.stderr
    nginx = start_nginx(work / "nginx.conf", work, port)
    w = type("World", (), {})()
    w.url, w.work, w.apps, w.seen = f"http://127.0.0.1:{port}", work, apps, set()
    yield w
    nginx.stop()
    for app in apps.values():
        app.stop()


def ask(world, path, client, **kwargs):
    """A request as the gateway sees one from `client` behind Code Engine's ingress."""
    headers = {"X-Forwarded-For": client, **kwargs.pop("headers", {})}
    return requests.request(kwargs.pop("method", "GET"), world.url + path, headers=headers, timeout=10, **kwargs)


def boot_as(world, client, mac, secret=None, pause=True):
    query = f"mac={mac}" + (f"&secret={secret}" if secret else "")
    if pause:
        time.sleep(1 / RATE)  # stay under the gateway's limit (the scan test goes over it on purpose)
    return ask(world, f"/boot/ipxe?{query}", client)


@pytest.fixture
def fleet(world, clean_db):
    """A profile whose config holds a secret, an operator-registered node (A) and a node
    whose server bootfleet created with an enrolment secret (B)."""
    from bootfleet.db import get_database, nodes
    from bootfleet.tokens import hash_secret

    profile = {**PROFILE, "config_template": "#cloud-config\npassword: hunter2-{{ node.hostname }}\n"}
    assert ask(world, "/config/api/v1/profiles", TRUSTED, method="POST", json=profile, headers=ADMIN).ok
    made = {}
    for mac, name in ((MAC_A, "a"), (MAC_B, "b")):
        answer = ask(world, "/config/api/v1/nodes", TRUSTED, method="POST", headers=ADMIN,
                     json={"macs": [mac], "hostname": name, "profile": "worker"})
        assert answer.status_code == 201, answer.text
        made[name] = answer.json()
    secret = secrets.token_urlsafe(32)
    with get_database().transaction() as tx:
        nodes.set_secret(tx, made["b"]["id"], hash_secret(secret))
    world.seen.add(secret)
    return type("Fleet", (), {"a": made["a"], "b": made["b"], "secret": secret})()


def token_of(world, script):
    token = token_from_script(script)
    world.seen.add(token)
    return token


def stage_of(world, node):
    return ask(world, f"/config/api/v1/nodes/{node['id']}", TRUSTED, headers=ADMIN).json()["stage"]


def normalised(answer):
    """An answer with what the request itself put in it (MAC, secret) blanked."""
    body = re.sub(r"mac=[0-9A-Fa-f%]+", "mac=M", answer.text)
    body = re.sub(r"&secret=[A-Za-z0-9_-]+", "", body)
    return answer.status_code, answer.headers.get("Content-Type"), body


def test_a_mac_scan_from_outside_gets_no_token_and_is_throttled(world, fleet):
    time.sleep(3)  # a full bucket
    answers = [ask(world, f"/boot/ipxe?mac=52:54:00:aa:00:{i:02x}", OUTSIDE) for i in range(40)]
    codes = [a.status_code for a in answers]
    assert codes.count(429) >= 20, codes  # 40 at once: the burst (10) and a few more pass
    assert all(a.status_code in (200, 429) for a in answers)
    served = [a for a in answers if a.status_code == 200]
    assert served and all("token=" not in a.text and "kernel " not in a.text for a in served)
    assert len({normalised(a) for a in served}) == 1  # known MAC (aa:00:01) or not: one answer
    assert stage_of(world, fleet.a) == "registered"


def test_known_unknown_and_wrong_secret_answers_are_indistinguishable(world, fleet):
    time.sleep(3)
    answers = {
        "known MAC, outside": boot_as(world, OUTSIDE, MAC_A),
        "unknown MAC, outside": boot_as(world, OUTSIDE, "52:54:00:cc:00:03"),
        "unknown MAC, trusted": boot_as(world, TRUSTED, "52:54:00:cc:00:04"),
        "enrolled, no secret, trusted": boot_as(world, TRUSTED, MAC_B),
        "enrolled, wrong secret": boot_as(world, OUTSIDE, MAC_B, secrets.token_urlsafe(32)),
        "known MAC, a secret it has not": boot_as(world, TRUSTED, MAC_A, secrets.token_urlsafe(32)),
    }
    shapes = {name: normalised(a) for name, a in answers.items()}
    assert len(set(shapes.values())) == 1, shapes
    assert all("token=" not in a.text for a in answers.values())
    # ... and the machines that have proof get their scripts.
    assert "token=" in boot_as(world, TRUSTED, MAC_A).text
    assert "token=" in boot_as(world, OUTSIDE, MAC_B, fleet.secret).text


def test_an_install_is_not_disturbed_and_its_token_dies_with_it(world, fleet):
    token = token_of(world, boot_as(world, TRUSTED, MAC_A).text)
    node = fleet.a["id"]
    progress = f"/status/nodes/{node}/progress?token={token}"
    assert ask(world, progress, TRUSTED, method="POST", json={"stage": "installing"}).ok
    # Unauthenticated boot requests (from outside, or with a secret A never had) change nothing.
    for attempt in (boot_as(world, OUTSIDE, MAC_A), boot_as(world, TRUSTED, MAC_A, secrets.token_urlsafe(32))):
        assert "token=" not in attempt.text
    assert stage_of(world, fleet.a) == "installing"
    config = ask(world, f"/config/nodes/{node}/user-data?token={token}", TRUSTED)
    assert config.status_code == 200 and "hunter2-a" in config.text
    assert ask(world, f"/config/nodes/{node}/t/{token}/user-data", TRUSTED).status_code == 200
    assert ask(world, progress, TRUSTED, method="POST", json={"stage": "ready"}).ok
    # The install is closed: its token reads nothing and reports nothing.
    assert ask(world, f"/config/nodes/{node}/user-data?token={token}", TRUSTED).status_code == 403
    late = ask(world, progress, OUTSIDE, method="POST", json={"stage": "failed"})
    assert late.status_code == 403 and "closed" in late.json()["error"]
    assert stage_of(world, fleet.a) == "ready"


def test_a_token_is_refused_after_a_reinstall(world, fleet):
    token = token_of(world, boot_as(world, OUTSIDE, MAC_B, fleet.secret).text)
    node = fleet.b["id"]
    assert ask(world, f"/config/nodes/{node}/meta-data?token={token}", OUTSIDE).status_code == 200
    assert ask(world, f"/config/api/v1/nodes/{node}/reinstall", TRUSTED, method="POST", headers=ADMIN).ok
    assert ask(world, f"/config/nodes/{node}/meta-data?token={token}", OUTSIDE).status_code == 403
    answer = ask(world, f"/status/nodes/{node}/progress?token={token}", OUTSIDE, method="POST",
                 json={"stage": "installing"})
    assert answer.status_code == 403
    assert stage_of(world, fleet.b) == "registered"


def test_no_token_or_secret_reaches_any_log(world, fleet):
    token = token_of(world, boot_as(world, OUTSIDE, MAC_B, fleet.secret).text)
    ask(world, f"/config/nodes/{fleet.b['id']}/t/{token}/meta-data", OUTSIDE)
    ask(world, f"/config/nodes/{fleet.b['id']}/user-data?token={token}", OUTSIDE)
    time.sleep(0.5)
    logs = {"gateway access log": (world.work / "access.log").read_text()}
    logs.update({f"{name} function": app.output() for name, app in world.apps.items()})
    assert "/t/[redacted]/meta-data" in logs["gateway access log"]
    assert any('"boot script"' in text for text in logs.values())  # the functions do log
    leaked = {(where, s[:12]) for where, text in logs.items() for s in world.seen | {GATEWAY_SECRET, ADMIN["Authorization"][7:]}
              if s in text}
    assert leaked == set()


def test_the_gateway_config_holds_the_limits(world):
    conf = (world.work / "nginx.conf").read_text()
    assert f"rate={RATE}r/s" in conf and "limit_req zone=bootfleet_boot" in conf
