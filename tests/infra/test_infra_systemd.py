"""infra/systemd: the self-hosted units. systemd is not run here; the commands the units
run are, exactly as systemd would hand them to exec (its $$ and %% escapes undone),
against the test PostgreSQL.
"""

from __future__ import annotations

import configparser
import os
import shlex
import subprocess

import pytest
import requests
from infra_support import ROOT, VENV_BIN, Process, free_port, need, wait_http

UNITS = ROOT / "infra" / "systemd"
CRON_SECRET = "test-cron-secret-for-systemd"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read_string((UNITS / name).read_text().replace("\\\n", " "))
    return parser


def exec_argv(line: str) -> list[str]:
    """An ExecStart= line as systemd splits it: quotes, C escapes, $$ -> $, %% -> %."""
    return [word.replace("$$", "$").replace("%%", "%") for word in shlex.split(line.replace("\\\\", "\\"))]


@pytest.mark.parametrize("name", ["bootfleet.service", "bootfleet-cleanup.service"])
def test_units_run_as_the_bootfleet_user_with_settings_from_the_env_file(name):
    service = unit(name)["Service"]
    assert service["User"] == "bootfleet"
    assert service["EnvironmentFile"] == "/etc/bootfleet/bootfleet.env"
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"


def test_the_timer_runs_cleanup_every_five_minutes():
    timer = unit("bootfleet-cleanup.timer")
    assert timer["Timer"]["OnCalendar"] == "*:0/5"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_the_env_example_names_only_real_settings():
    from test_infra_terraform import settings_read_by_code

    names = set()
    for line in (UNITS / "bootfleet.env.example").read_text().splitlines():
        line = line.lstrip("#").strip()
        if line.startswith("BOOTFLEET_") and "=" in line:
            names.add(line.split("=", 1)[0])
    assert names and names <= settings_read_by_code(), sorted(names - settings_read_by_code())


@pytest.fixture
def router_service(clean_db):
    """bootfleet.service's ExecStart, with the venv and a free port for /opt/bootfleet and 8080."""
    port = free_port()
    argv = exec_argv(unit("bootfleet.service")["Service"]["ExecStart"])
    argv = [a.replace("/opt/bootfleet/venv/bin", str(VENV_BIN)).replace("127.0.0.1:8080", f"127.0.0.1:{port}")
            for a in argv]
    proc = Process(argv, port, env={"BOOTFLEET_ROOT": str(ROOT), "BOOTFLEET_CRON_SECRET": CRON_SECRET})
    yield proc
    proc.stop()


def test_the_service_command_serves_the_router(router_service):
    assert wait_http(router_service.url + "/healthz").json()["status"] == "ok"
    script = requests.get(router_service.url + "/boot/boot.ipxe", timeout=10)
    assert script.status_code == 200 and script.text.startswith("#!ipxe")


def test_the_cleanup_command_runs_cleanup_with_the_cron_secret(router_service):
    need("curl", "curl")
    argv = exec_argv(unit("bootfleet-cleanup.service")["Service"]["ExecStart"])
    argv = [a.replace("http://127.0.0.1:8080", router_service.url) for a in argv]
    assert argv[:2] == ["/bin/sh", "-c"]
    ran = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                         env={"PATH": os.environ["PATH"], "BOOTFLEET_CRON_SECRET": CRON_SECRET})
    assert ran.returncode == 0, ran.stderr + router_service.output()[-2000:]
    assert ran.stdout.lstrip().startswith("{")

    wrong = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                           env={"PATH": os.environ["PATH"], "BOOTFLEET_CRON_SECRET": "not-the-secret"})
    assert wrong.returncode == 22, "curl -f must fail the unit when cleanup refuses"
    assert "401" in wrong.stderr or "403" in wrong.stderr
