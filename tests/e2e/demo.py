"""`make demo`: three QEMU machines network-boot the local system and report until ready.

Starts `bootfleet serve` (or uses the one already answering on the port, e.g. from
`make run`), uploads the e2e node's kernel and initramfs with `bootfleet images upload`,
creates a profile and a deployment of 3 with the `local` provider: the provisioner
(lib/common/bootfleet/provision/provisioner.py, the same path as IBM Cloud) creates its nodes and one QEMU VM
each (lib/common/bootfleet/providers/vpc/local.py: Debian's iPXE in QEMU). Then `bootfleet watch` until all
three are ready, and the deployment is deleted again, which stops the VMs.

    python tests/e2e/demo.py [--port 8080] [--count 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "lib" / "common"))  # the bootfleet package, as installed
sys.path.insert(0, str(ROOT / "tests"))  # support.server: the tests' own way to start `bootfleet serve`

from node_image import NodeImageUnavailableError, build  # noqa: E402
from support.server import RunningServer  # noqa: E402

from bootfleet.providers.vpc import qemu  # noqa: E402

PROFILE = {
    "name": "qemu-demo",
    "kernel": "demo/vmlinuz",
    "initrds": ["demo/initrd.img"],
    "args": "console=ttyS0 panic=5 bootfleet.node={{ node.id }} bootfleet.config={{ config_url }} "
    "bootfleet.status={{ status_url }}",
    "config_format": "cloud-init",
    "config_template": "#cloud-config\nhostname: {{ node.hostname }}\n",
}


def cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bootfleet.cli", *args], cwd=ROOT, env=env, check=True)


def healthy(url: str) -> bool:
    try:
        return requests.get(url + "/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def start_server(port: int, data: Path, env: dict) -> RunningServer:
    # Its own session: a Ctrl-C reaches only the demo, which then deletes its VMs through the server.
    try:
        return RunningServer(env=env, workers=None, threads=None, port=port, data=data, timeout=90,
                             log_name="demo-serve.log", new_session=True)
    except RuntimeError:
        sys.exit(f"demo: bootfleet serve did not start; see {data / 'demo-serve.log'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8080)))
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--timeout", type=int, default=600, help="give up after this many seconds")
    args = parser.parse_args()
    try:
        qemu.find_tools()
        image = build()
    except (qemu.QemuUnavailableError, NodeImageUnavailableError) as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1

    data = Path(os.environ.get("BOOTFLEET_DATA_DIR", ROOT / ".data")).resolve()
    data.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{args.port}"
    env = {**os.environ, "BOOTFLEET_DATA_DIR": str(data), "BOOTFLEET_URL": url}
    server = None
    if healthy(url):
        print(f"demo: using the bootfleet already running on {url}")
    else:
        print(f"demo: starting bootfleet on {url} (log: {data / 'demo-serve.log'})")
        server = start_server(args.port, data, env)
    deployed = None
    try:
        token = json.loads((data / "secrets.json").read_text())["admin_token"]
        admin = {"Authorization": f"Bearer {token}"}

        def call(method, path, body=None):
            resp = requests.request(method, url + path, json=body, headers=admin, timeout=30)
            if resp.status_code >= 400:
                sys.exit(f"demo: {method} {path}: {resp.status_code} {resp.text.strip()}")
            return resp.json() if resp.content else None

        cli("images", "upload", "--prefix", "demo", str(image.kernel), str(image.initrd), env=env)
        if requests.get(f"{url}/config/api/v1/profiles/qemu-demo", headers=admin, timeout=10).status_code == 404:
            call("POST", "/config/api/v1/profiles", PROFILE)
        name = time.strftime("demo-%H%M%S")
        started = time.monotonic()
        created = call("POST", "/config/api/v1/deployments", {
            "name": name, "profile": "qemu-demo", "provider": "local", "count": args.count,
            "placement": {"memory": "384"}})
        deployed = name
        report = created.get("provisioning", {})
        if report.get("errors"):
            sys.exit(f"demo: provisioning failed: {'; '.join(report['errors'])}")
        print(f"demo: deployment {name}: the local provider started VMs {', '.join(report.get('created', []))}"
              f" (serial consoles in {data / 'vms'}); watching:\n", flush=True)
        watch = subprocess.run([sys.executable, "-m", "bootfleet.cli", "watch", name, "--interval", "1",
                                "--timeout", str(args.timeout)], cwd=ROOT, env=env)
        elapsed = time.monotonic() - started
        if watch.returncode != 0:
            print(f"demo: not every node reached ready; see {data / 'vms'}", file=sys.stderr)
            return 1
        print(f"demo: {args.count} nodes ready {elapsed:.0f} s after the deployment was created")
        return 0
    finally:
        if deployed:
            _tear_down(url, deployed, env)
        if server is not None:
            server.stop(timeout=20)


def _tear_down(url: str, name: str, env: dict) -> None:
    """Delete the demo deployment; provisioning passes stop its VMs until it is deleted."""
    print(f"demo: deleting deployment {name} (stops its VMs)")
    subprocess.run([sys.executable, "-m", "bootfleet.cli", "deployment", "delete", name, "--yes"], cwd=ROOT, env=env,
                   stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        result = subprocess.run([sys.executable, "-m", "bootfleet.cli", "--json", "deployment", "reconcile", name],
                                cwd=ROOT, env=env, capture_output=True, text=True)
        if result.returncode == 0 and json.loads(result.stdout).get("state") == "deleted":
            return
        time.sleep(1)
    print(f"demo: deployment {name} not deleted yet; run `bootfleet deployment reconcile {name}`", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
