"""Small builders shared by the functional tests (real database, real functions)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

TABLES = ("event", "dns_record", "unknown_machine", "node_mac", "node", "deployment", "profile")
# Emptied with them by clean_db, but not in a snapshot: the audit log records failed attempts too (issue 23).
TEAM_TABLES = ("api_token", "audit_log", "webhook_attempt", "webhook_delivery", "webhook")


def snapshot(database) -> dict:
    """Every row of every table: compare before and after to prove nothing changed."""
    with database.transaction() as tx:
        return {t: tx.all(f"SELECT * FROM {t} ORDER BY 1") for t in TABLES}

PROFILE = {
    "name": "worker",
    "kernel": "vmlinuz",
    "initrds": ["initrd.img"],
    "args": "console=ttyS0 cfg={{ config_url }} st={{ status_url }}",
    "config_format": "cloud-init",
    "config_template": "#cloud-config\nhostname: {{ node.hostname }}\nrack: {{ node.labels.rack }}\n",
}


def make_profile(config, admin, **overrides):
    resp = config.post("/api/v1/profiles", json={**PROFILE, **overrides}, headers=admin)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.json


def make_node(config, admin, mac="52:54:00:00:00:01", **fields):
    body = {"macs": [mac], **fields}
    resp = config.post("/api/v1/nodes", json=body, headers=admin)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.json


def token_from_script(script: str) -> str:
    match = re.search(r"token=([A-Za-z0-9._-]+)", script)
    assert match, script
    return match.group(1)


def ready_node(config, boot, status, admin, mac, hostname, ip, deployment="rack1"):
    """Register a node, boot it and have it report `ready` (as a real node would)."""
    node = make_node(config, admin, mac=mac, hostname=hostname, ip=ip, deployment=deployment)
    token = token_from_script(boot.get(f"/ipxe?mac={mac}").get_data(as_text=True))
    resp = status.post(f"/nodes/{node['id']}/progress?token={token}", json={"stage": "ready"})
    assert resp.status_code == 200 and resp.json["stage"] == "ready", resp.json
    return node


def make_dns_fleet(config, admin, zone):
    """A deployment `rack1` in `zone` whose `api` name spans its ready nodes."""
    make_profile(config, admin)
    resp = config.post("/api/v1/deployments", headers=admin, json={
        "name": "rack1", "profile": "worker", "dns_zone": zone, "spec": {"dns": {"names": ["api"]}}})
    assert resp.status_code == 201, resp.json
    return resp.json


def user_cli(server, *args: str, cwd, ok: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """`bootfleet ARGS` in `cwd` as a user's shell runs it: no BOOTFLEET_ variables, the server
    found through the config directory `bootfleet serve` wrote. `ok`: it must succeed; else it
    must fail with one `bootfleet: ...` message and no traceback."""
    environ = {**{k: v for k, v in os.environ.items() if not k.startswith("BOOTFLEET_")},
               "XDG_CONFIG_HOME": str(server.data / "config")}
    result = subprocess.run([sys.executable, "-m", "bootfleet.cli", *args], cwd=cwd, env=environ,
                            capture_output=True, text=True, timeout=timeout, check=False)
    if ok:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0, result.stdout
        assert result.stderr.startswith("bootfleet: ") and "Traceback" not in result.stderr, result.stderr
    return result
