"""Installers report in their own format (issue 25, docs/installers.md): cloud-init's webhook
reporter, the real one from Debian's cloud-init package (tests/support/cloudinit.py), posts to
a running `bootfleet serve` as a node's cloud-init does when its cloud-config says

    reporting:
      bootfleet: {type: webhook, endpoint: "{{ status_url }}"}

curtin (and subiquity, Ubuntu's autoinstall, through curtin's reporting) posts the same JSON
(curtin's doc/topics/reporting.rst): its events are sent here through the same handler with
origin "curtin", as curtin's own events say.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests
from support import ADMIN, cloudinit
from support.helpers import snapshot, token_from_script

PROFILE = {"name": "ubuntu", "kernel": "vmlinuz", "initrds": ["initrd"], "args": "status={{ status_url }}",
           "config_format": "cloud-init",
           "config_template": "#cloud-config\nhostname: {{ node.hostname }}\n"}


@pytest.fixture(scope="module")
def reporting():
    """cloud-init's reporting module, from the package."""
    cloudinit.load()
    from cloudinit import reporting

    yield reporting
    reporting.update_configuration({"bootfleet": None})


def api(srv, method, path, **kwargs):
    resp = requests.request(method, srv.url + path, headers=ADMIN, timeout=30, **kwargs)
    assert resp.status_code < 400, resp.text
    return resp.json() if resp.content else None


@pytest.fixture
def node(srv, clean_db):
    """A node that fetched its boot script: (node, its status URL with the token)."""
    api(srv, "POST", "/config/api/v1/profiles", json=PROFILE)
    node = api(srv, "POST", "/config/api/v1/nodes", json={"macs": ["52:54:00:00:25:01"], "hostname": "u1",
                                                           "profile": "ubuntu"})
    script = requests.get(srv.url + "/boot/ipxe?mac=52:54:00:00:25:01", timeout=30).text
    return node, f"{srv.url}/status/nodes/{node['id']}/progress?token={token_from_script(script)}"


def stage(srv, node):
    return api(srv, "GET", f"/config/api/v1/nodes/{node['id']}")["stage"]


def messages(srv, node, kind):
    return [e["message"] for e in api(srv, "GET", f"/status/nodes/{node['id']}/events")["events"] if e["kind"] == kind]


def webhook(reporting, endpoint):
    """cloud-init's WebHookHandler configured as a cloud-config's `reporting:` key configures it."""
    reporting.update_configuration({"bootfleet": {"type": "webhook", "endpoint": endpoint}})


def test_cloud_init_webhook_events_move_the_node_and_each_is_kept(srv, reporting, node):
    from cloudinit.reporting import events

    node, endpoint = node
    webhook(reporting, endpoint)
    with events.ReportEventStack("init-network", "searching for network datasources") as parent:
        with events.ReportEventStack("config-ssh", "running config-ssh with frequency once-per-instance",
                                     parent=parent):
            pass
    reporting.flush_events()
    assert stage(srv, node) == "configuring"
    kept = messages(srv, node, "report")
    assert kept == ["cloudinit start init-network (searching for network datasources)",
                    "cloudinit start init-network/config-ssh (running config-ssh with frequency once-per-instance)",
                    "cloudinit finish init-network/config-ssh: SUCCESS"
                    " (running config-ssh with frequency once-per-instance)",
                    "cloudinit finish init-network: SUCCESS (searching for network datasources)"]

    # curtin's events (the installer writing the disk): installing.
    events.report_event(events.ReportingEvent("start", "cmd-install/stage-partitioning", "configuring storage",
                                              origin="curtin"))
    reporting.flush_events()
    assert stage(srv, node) == "installing"
    # A late cloud-init event of an earlier phase is kept and moves nothing back.
    events.report_start_event("modules-final", "running modules for final")
    reporting.flush_events()
    assert stage(srv, node) == "installing"
    assert messages(srv, node, "report")[-1] == "cloudinit start modules-final (running modules for final)"


def test_a_fail_result_fails_the_node_with_the_events_name_and_description(srv, reporting, node):
    from cloudinit.reporting import events

    node, endpoint = node
    webhook(reporting, endpoint)
    events.report_event(events.ReportingEvent("start", "cmd-install", "curtin command install", origin="curtin"))
    events.report_event(events.FinishReportingEvent("cmd-install/stage-partitioning", "configuring storage",
                                                    result=events.status.FAIL))
    reporting.flush_events()
    assert stage(srv, node) == "failed"
    assert "cloudinit reports cmd-install/stage-partitioning failed: configuring storage" in messages(
        srv, node, "stage")


def test_the_installed_systems_first_boot_finishing_is_ready(srv, reporting, node):
    from cloudinit.reporting import events

    node, endpoint = node
    assert requests.post(endpoint, json={"stage": "rebooting"}, timeout=30).status_code == 200
    webhook(reporting, endpoint)
    with events.ReportEventStack("modules-final", "running modules for final"):
        pass
    reporting.flush_events()
    assert stage(srv, node) == "ready"


@pytest.mark.parametrize("body,field", [
    ({"event_type": "start"}, "name"),
    ({"event_type": 7, "name": "x"}, "event_type"),
    ({"event_type": "finish", "name": "x", "result": "MAYBE"}, "result"),
    ({"event_type": "finish", "name": ["x"]}, "name"),
    ({"event_type": "start", "name": "x", "description": {"a": 1}}, "description"),
])
def test_a_malformed_event_is_a_400_naming_the_field_and_changes_nothing(srv, node, clean_db, body, field):
    node, endpoint = node
    before = snapshot(clean_db)
    resp = requests.post(endpoint, json=body, timeout=30)
    assert resp.status_code == 400 and resp.json()["error"].startswith(f"{field}: "), resp.text
    assert snapshot(clean_db) == before


def test_an_event_without_the_nodes_token_is_refused(srv, node, clean_db):
    node, endpoint = node
    before = snapshot(clean_db)
    resp = requests.post(endpoint.partition("?")[0], json={"event_type": "finish", "name": "x", "result": "FAIL"},
                         timeout=30)
    assert resp.status_code == 401
    assert snapshot(clean_db) == before


# --- installed_after: installers that reboot without a word (docs/installers.md) ---------------


def cli(srv, *args, cwd):
    """`bootfleet ARGS` as a user's shell runs it, finding the server through serve's config directory."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BOOTFLEET_")}
    environ["XDG_CONFIG_HOME"] = str(srv.data / "config")
    result = subprocess.run([sys.executable, "-m", "bootfleet.cli", *args], cwd=cwd, env=environ, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def boot(srv, mac):
    return requests.get(f"{srv.url}/boot/ipxe?mac={mac}", timeout=30).text


def test_a_repeated_boot_after_installed_after_boots_the_disk_instead_of_a_new_install(srv, clean_db, tmp_path):
    cli(srv, "profile", "create", "--name", "fcos", "--kernel", "vmlinuz", "--args", "st={{ status_url }}",
        "--installed-after", "installing", cwd=tmp_path)
    node = json.loads(cli(srv, "node", "create", "--mac", "52:54:00:00:25:02", "--profile", "fcos", "--hostname",
                          "core1", "--json", cwd=tmp_path))
    token = token_from_script(boot(srv, "52:54:00:00:25:02"))
    # The Ignition progress unit says installing; coreos-installer then writes the disk and reboots.
    url = f"{srv.url}/status/nodes/{node['id']}/progress?token={token}"
    assert requests.post(url, json={"stage": "installing"}, timeout=30).json()["stage"] == "installing"
    again = boot(srv, "52:54:00:00:25:02")
    assert "booting from the local disk" in again and "kernel" not in again
    assert stage(srv, node) == "rebooting"
    assert messages(srv, node, "stage")[-1] == ("booted again after installing (profile fcos: installed_after"
                                                " installing): installed; boots its local disk")
    # The installed system's report still counts (the install stays open until ready).
    assert requests.post(url, json={"stage": "ready"}, timeout=30).json()["stage"] == "ready"


def test_without_installed_after_or_before_its_stage_a_repeated_boot_restarts_the_install(srv, clean_db, tmp_path):
    cli(srv, "profile", "create", "--name", "fcos", "--kernel", "vmlinuz", "--args", "st={{ status_url }}",
        "--installed-after", "installing", cwd=tmp_path)
    node = json.loads(cli(srv, "node", "create", "--mac", "52:54:00:00:25:03", "--profile", "fcos", "--json",
                          cwd=tmp_path))
    token = token_from_script(boot(srv, "52:54:00:00:25:03"))
    url = f"{srv.url}/status/nodes/{node['id']}/progress?token={token}"
    requests.post(url, json={"stage": "configuring"}, timeout=30)
    assert "kernel" in boot(srv, "52:54:00:00:25:03")  # configuring is before installing: a new install
    assert stage(srv, node) == "booting"
    # Cleared from the CLI: back to restarting the install on every boot before rebooting.
    shown = json.loads(cli(srv, "profile", "update", "fcos", "--installed-after", "none", "--json", cwd=tmp_path))
    assert shown["installed_after"] is None
    token = token_from_script(boot(srv, "52:54:00:00:25:03"))
    requests.post(f"{srv.url}/status/nodes/{node['id']}/progress?token={token}", json={"stage": "installing"},
                  timeout=30)
    assert "kernel" in boot(srv, "52:54:00:00:25:03") and stage(srv, node) == "booting"


@pytest.mark.parametrize("value", ["booting", "ready", 3, ""])
def test_installed_after_takes_configuring_or_installing_only(srv, clean_db, value):
    before = snapshot(clean_db)
    resp = requests.post(srv.url + "/config/api/v1/profiles", headers=ADMIN, timeout=30,
                         json={**PROFILE, "installed_after": value})
    assert resp.status_code == 400 and "installed_after" in resp.json()["error"], resp.text
    assert snapshot(clean_db) == before
