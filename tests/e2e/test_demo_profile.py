"""The `demo` profile `bootfleet serve` creates boots to `ready` (issue 16, item 2): the
images step of `make run` (tests/e2e/node_image.py --out <data dir>/images) puts the e2e
node's kernel and initramfs under the keys the profile names, and the `local` example of
docs/vpc.md runs as written there, with the CLI from another directory.

Needs qemu-system-x86_64, Debian's ipxe and busybox, and the node image (skips with the
apt-get command; fails under CI=true so CI never skips it silently).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support import ROOT
from support.server import RunningServer

from bootfleet.providers.vpc import qemu

from .node_image import NodeImageUnavailableError, build

pytestmark = pytest.mark.e2e


def _need_tools():
    try:
        qemu.find_tools()
        build()
    except (qemu.QemuUnavailableError, NodeImageUnavailableError) as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the demo profile test: {e}")
        pytest.skip(str(e))


def test_the_demo_profile_reaches_ready(clean_db, tmp_path):
    _need_tools()
    data = tmp_path / "data"
    images = subprocess.run([sys.executable, "tests/e2e/node_image.py", "--out", str(data / "images")], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, check=False)  # what `make run` runs first
    assert images.returncode == 0, images.stderr
    srv = RunningServer(env={"BOOTFLEET_BASE_URL": ""}, data=data, demo=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTFLEET_")}
    env["XDG_CONFIG_HOME"] = str(data / "config")

    def bootfleet(*args, timeout=120):
        result = subprocess.run([sys.executable, "-m", "bootfleet.cli", *args], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=timeout, check=False)
        assert result.returncode == 0, result.stderr + result.stdout
        return result

    try:
        profile = json.loads(bootfleet("profile", "get", "demo", "--json").stdout)
        assert (profile["kernel"], profile["initrds"]) == ("vmlinuz", ["initrd.img"])
        assert "FAIL" not in bootfleet("doctor").stdout  # the demo's images are there
        bootfleet("deployment", "create", "--name", "demo", "--profile", "demo", "--provider", "local",
                  "--count", "1")
        watch = bootfleet("watch", "demo", "--interval", "1", "--timeout", "240", timeout=300)
        assert "all nodes ready" in watch.stdout
    finally:
        subprocess.run([sys.executable, "-m", "bootfleet.cli", "deployment", "delete", "demo", "--yes"],
                       cwd=tmp_path, env=env, capture_output=True, timeout=60, check=False)
        subprocess.run([sys.executable, "-m", "bootfleet.cli", "deployment", "reconcile", "demo"],
                       cwd=tmp_path, env=env, capture_output=True, timeout=60, check=False)
        for record in (data / "vms").glob("*.json"):  # never leave a VM behind
            try:
                os.killpg(json.loads(record.read_text())["pid"], 15)
            except ProcessLookupError:
                pass
        srv.stop()
