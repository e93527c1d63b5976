"""Attacker tests (issue 12) and the client's address through Code Engine (issue 21): the
real gateway (nginx in functions mode, as deployed on Code Engine, with its default trusted
hops) in front of the real function apps (the container's entrypoint), with a boot network
of 198.51.100.0/28 (through the public domain a node's address is its public gateway's).

Requests reach the gateway as Code Engine delivers them: the client's address followed by
Code Engine's own hops in X-Forwarded-For, the last hop being the TCP peer. The shapes are
the ones IBM's and Knative's documents show an app receiving:
- ibm-cloud-docs/codeengine subscription-cron.md (an app printing its headers):
  X-Forwarded-For=[172.30.136.209, 172.30.48.203, 172.30.167.171]: the sender, then the
  Istio ingress (X-Envoy-Peer-Metadata-Id=router~172.30.48.203~istio-ingressgateway...)
  and Knative's activator (K-Proxy-Request=[activator]);
- subscription-kafka.md: [172.30.208.213, 127.0.0.6, 127.0.0.6] (the pod's sidecars);
- knative/serving issue 3112: "10.128.0.7, 127.0.0.1, 127.0.0.1".
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time

import pytest
import requests
from infra_support import entrypoint, free_port, need, render, start_nginx, worker_user, world_readable_tmpdir
from support import ADMIN, ADMIN_TOKEN
from support.helpers import PROFILE, token_from_script

GATEWAY_SECRET = secrets.token_hex(24)
RATE = 5  # /boot/ requests a second per client at the gateway (a burst of 10)
BOOT_NETWORK = "198.51.100.0/28"  # the public gateway (and floating IPs) the fleet's nodes leave by
TRUSTED = "198.51.100.5"  # inside the boot network
NEIGHBOUR = "198.51.100.6"  # another node in it, behind the same Code Engine hops
OUTSIDE = "203.0.113.7"  # an attacker on the internet
MAC_A, MAC_B = "52:54:00:aa:00:01", "52:54:00:bb:00:02"
# Code Engine's hops after the client, as the documents above show them (the peer, 127.0.0.1
# here, is the last hop: nginx reads it as the TCP peer, not from the header).
CODE_ENGINE_HOPS = {
    "IBM cron subscription": ["172.30.48.203", "172.30.167.171"],
    "IBM Kafka subscription": ["127.0.0.6", "127.0.0.6"],
    "Knative issue 3112": ["10.128.0.7", "127.0.0.1", "127.0.0.1"],
}
HOPS = CODE_ENGINE_HOPS["IBM cron subscription"]


@pytest.fixture(scope="module")
def world(database):
    need("nginx", "nginx")
    work = world_readable_tmpdir("bootfleet-attack-")
    env = {"BOOTFLEET_GATEWAY_SECRET": GATEWAY_SECRET, "BOOTFLEET_BOOT_NETWORKS": BOOT_NETWORK,
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


def ask(world, path, client, hops=HOPS, spoofed=(), **kwargs):
    """A request as the gateway sees one from `client` behind Code Engine's hops; `spoofed`:
    entries the client itself put in X-Forwarded-For before Code Engine appended to it."""
    headers = {"X-Forwarded-For": ", ".join([*spoofed, client, *hops]), **kwargs.pop("headers", {})}
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


# --- the client's address through Code Engine (issue 21) ---------------------------------------------


@pytest.mark.parametrize("shape", sorted(CODE_ENGINE_HOPS))
def test_the_client_is_found_behind_code_engines_hops(world, shape):
    hops = CODE_ENGINE_HOPS[shape]
    seen = ask(world, "/boot/whoami", OUTSIDE, hops=hops, spoofed=["10.0.0.1", TRUSTED])
    assert seen.status_code == 200, seen.text
    body = seen.json()
    assert body["address"] == OUTSIDE, body  # not a hop, not what the client wrote in front
    assert body["via"] == "gateway" and body["looks_internal"] is False and body["boot_network"] is False
    assert body["forwarded_for"] == ["10.0.0.1", TRUSTED, OUTSIDE, *hops]
    assert body["skipped"] == [*hops, "127.0.0.1"]  # the hops, then the gateway's TCP peer
    assert GATEWAY_SECRET not in seen.text
    # What doctor makes of that answer (from an operator's machine at OUTSIDE):
    from bootfleet.doctor import client_address_check

    check = client_address_check(body)
    assert check["ok"] and f"as {OUTSIDE} via the gateway" in check["detail"] and hops[0] in check["detail"]


def test_a_node_behind_code_engine_matches_its_boot_network_and_a_spoofed_one_does_not(world, fleet):
    time.sleep(1)
    # A registered MAC from the boot network's public gateway gets its script ...
    assert "token=" in boot_as(world, TRUSTED, MAC_A).text
    # ... one that writes that address in front of its own gets nothing, whatever the hops.
    for hops in CODE_ENGINE_HOPS.values():
        time.sleep(1 / RATE)
        spoofed = ask(world, f"/boot/ipxe?mac={MAC_A}", OUTSIDE, hops=hops, spoofed=[TRUSTED])
        assert spoofed.status_code == 200 and "token=" not in spoofed.text
    assert stage_of(world, fleet.a) == "booting"


def test_each_client_has_its_own_rate_limit_behind_the_same_hops(world, fleet):
    time.sleep(3)  # full buckets
    storm = [ask(world, "/boot/ipxe?mac=52:54:00:dd:00:01", OUTSIDE) for _ in range(30)]
    assert [a.status_code for a in storm].count(429) >= 10
    # Every request came through the same Code Engine hops: a node elsewhere is not throttled.
    assert ask(world, "/boot/ipxe?mac=52:54:00:dd:00:02", NEIGHBOUR).status_code == 200
    assert ask(world, "/boot/whoami", NEIGHBOUR).json()["address"] == NEIGHBOUR


def test_an_unknown_machine_is_recorded_with_the_clients_address(world, fleet):
    time.sleep(1)
    mac = "52:54:00:ee:00:05"
    assert boot_as(world, NEIGHBOUR, mac, pause=False).status_code == 200
    unknown = ask(world, "/config/api/v1/unknown", TRUSTED, headers=ADMIN).json()["items"]
    assert [row["last_address"] for row in unknown if row["mac"] == mac] == [NEIGHBOUR]


def test_doctor_fails_when_the_gateway_takes_a_hop_for_the_client(world, fleet, tmp_path):
    """What doctor shows on a first apply whose hops are not all in gateway_trusted_hops: here
    the request reaches the gateway with no X-Forwarded-For, from a peer the gateway trusts
    as a hop (127.0.0.1), so nothing but a hop is left to take for the client."""
    time.sleep(1)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BOOTFLEET_")},
           "BOOTFLEET_URL": world.url, "BOOTFLEET_ADMIN_TOKEN": ADMIN_TOKEN, "XDG_CONFIG_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "bootfleet.cli", "doctor", "--json"], env=env,
                            capture_output=True, text=True, timeout=120)
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    check = checks["client address"]
    assert check["ok"] is False and "127.0.0.1, an internal address" in check["detail"], check
    assert "gateway_trusted_hops" in check["detail"]
    assert result.returncode != 0 and "client address" in result.stderr
