"""The `bootfleet` command against a running server, as an operator uses it."""

import json
import subprocess
import sys

import requests
from support import ADMIN_TOKEN, ROOT
from support.helpers import token_from_script


def bootfleet(server, *args, check=True):
    result = subprocess.run(
        [sys.executable, "-m", "bootfleet.cli", "--url", server.url, "--token", ADMIN_TOKEN, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_operator_workflow(server, tmp_path):
    template = tmp_path / "user-data.j2"
    template.write_text("#cloud-config\nhostname: {{ node.hostname }}\n")
    bootfleet(server, "profile", "create", "--name", "cli-prof", "--kernel", "vmlinuz", "--initrd", "initrd.img",
              "--args", "console=ttyS0 st={{ status_url }}", "--config-format", "cloud-init", "--template", str(template))
    bootfleet(server, "deployment", "create", "--name", "cli-dep", "--profile", "cli-prof", "--count", "1")
    created = json.loads(bootfleet(server, "--json", "node", "create", "--mac", "52:54:00:cc:00:01",
                                   "--hostname", "cli1", "--deployment", "cli-dep", "--label", "rack=r9").stdout)
    assert created["macs"] == ["52:54:00:cc:00:01"] and created["labels"] == {"rack": "r9"}

    table = bootfleet(server, "node", "list", "--deployment", "cli-dep").stdout
    assert "HOSTNAME" in table and "cli1" in table and "registered" in table

    script = requests.get(server.url + "/boot/ipxe", params={"mac": "52:54:00:cc:00:01"}).text
    token = token_from_script(script)
    requests.post(f"{server.url}/status/nodes/{created['id']}/progress", params={"token": token},
                  json={"stage": "ready"}).raise_for_status()

    status = bootfleet(server, "status", "cli-dep").stdout
    assert "100.0%" in status and "ready=1" in status
    watch = bootfleet(server, "watch", "cli-dep", "--interval", "0.2", "--timeout", "20").stdout
    assert "all nodes ready" in watch and "ready" in watch
    events = bootfleet(server, "events", "--deployment", "cli-dep").stdout
    assert "booting" in events and "ready" in events


def test_errors_are_one_clear_line(server):
    result = bootfleet(server, "node", "create", "--mac", "not-a-mac", check=False)
    assert result.returncode == 1
    assert "400" in result.stderr and "macs.0" in result.stderr and "Traceback" not in result.stderr
    result = bootfleet(server, "profile", "get", "ghost", check=False)
    assert result.returncode == 1 and "404" in result.stderr and "not found" in result.stderr


def test_unreachable_server_says_so():
    result = subprocess.run([sys.executable, "-m", "bootfleet.cli", "--url", "http://127.0.0.1:1", "node", "list"],
                            cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "cannot reach bootfleet" in result.stderr


def test_dns_commands(tmp_path):
    from support.dns_bind import ZONE, BindServer, named_binary

    if named_binary() is None:
        import pytest
        pytest.skip("apt-get install bind9 dnsutils")
    from support import ADMIN
    from support.server import RunningServer

    bind = BindServer()
    srv = RunningServer(env=bind.env())
    try:
        none = subprocess.run([sys.executable, "-m", "bootfleet.cli", "--url", srv.url, "--token", ADMIN_TOKEN, "dns",
                               "records"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert none.returncode == 0 and none.stdout.split() == ["ZONE", "NAME", "TYPE", "VALUE"]
        api = srv.url + "/config/api/v1"
        requests.post(api + "/profiles", headers=ADMIN, json={"name": "p", "kernel": "k", "args": "st={{ status_url }}"}
                      ).raise_for_status()
        requests.post(api + "/deployments", headers=ADMIN, json={"name": "rack9", "profile": "p", "dns_zone": ZONE}
                      ).raise_for_status()
        node = requests.post(api + "/nodes", headers=ADMIN, json={
            "macs": ["52:54:00:dd:00:01"], "hostname": "cli9", "ip": "10.0.9.9", "deployment": "rack9"}).json()
        token = token_from_script(requests.get(srv.url + "/boot/ipxe", params={"mac": "52:54:00:dd:00:01"}).text)
        requests.post(f"{srv.url}/status/nodes/{node['id']}/progress", params={"token": token},
                      json={"stage": "ready"}).raise_for_status()

        records = bootfleet(srv, "dns", "records", "--deployment", "rack9").stdout
        assert f"cli9.{ZONE}" in records and "10.0.9.9" in records and "PTR" in records
        plan = bootfleet(srv, "dns", "reconcile", "--dry-run").stdout
        assert plan.startswith("plan (dry run): planned 0") and "provider writes 0" in plan
        assert bind.lookup(f"cli9.{ZONE}", "A") == ["10.0.9.9"]
    finally:
        srv.stop()
        bind.stop()


def test_dns_reconcile_without_a_provider_says_what_to_set(server):
    result = bootfleet(server, "dns", "reconcile", check=False)
    assert result.returncode == 1 and "409" in result.stderr and "BOOTFLEET_DNS_PROVIDER" in result.stderr
