"""`make demo`: three QEMU machines network-boot the local system and report until ready.

Starts `bootfleet serve` (or uses the one already answering on the port, e.g. from
`make run`), uploads the e2e node's kernel and initramfs with `bootfleet images upload`,
creates a profile, a deployment of 3 and its 3 nodes (with MACs), boots one VM per
node (Debian's iPXE in QEMU, see lib/common/qemu.py) and runs `bootfleet watch` until
all three are ready. A later `local` VPC provider will make the nodes itself.

    python tests/e2e/demo.py [--port 8080] [--count 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "lib"))

from common import qemu  # noqa: E402

from node_image import NodeImageUnavailableError, build  # noqa: E402

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
    return subprocess.run([sys.executable, "-m", "common.cli", *args], cwd=ROOT, env=env, check=True)


def healthy(url: str) -> bool:
    try:
        return requests.get(url + "/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def start_server(port: int, data: Path, env: dict) -> subprocess.Popen:
    log = open(data / "demo-serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "common.cli", "serve", "--port", str(port), "--no-demo"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    while not healthy(f"http://127.0.0.1:{port}"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.terminate()
            sys.exit(f"demo: bootfleet serve did not start; see {data / 'demo-serve.log'}")
        time.sleep(0.3)
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8080)))
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--timeout", type=int, default=600, help="give up after this many seconds")
    args = parser.parse_args()
    try:
        tools = qemu.find_tools()
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
    vms: list[qemu.VM] = []
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
        call("POST", "/config/api/v1/deployments", {"name": name, "profile": "qemu-demo", "count": args.count})
        rng = random.Random()
        nodes = []
        for i in range(1, args.count + 1):
            mac = "52:54:00:%02x:%02x:%02x" % (rng.randrange(256), rng.randrange(256), i)
            nodes.append(call("POST", "/config/api/v1/nodes",
                              {"macs": [mac], "hostname": f"{name}-{i}", "deployment": name}))
        print(f"demo: deployment {name}: {', '.join(n['hostname'] + ' ' + n['macs'][0] for n in nodes)}")

        started = time.monotonic()
        for node in nodes:
            vms.append(qemu.start(node["hostname"], node["macs"][0], qemu.GUEST_BASE_URL,
                                  {qemu.GUEST_ADDRESS: args.port}, log_dir=data / "demo-vms",
                                  timeout=args.timeout, tools=tools))
        print(f"demo: booted {len(vms)} QEMU VMs (serial consoles in {data / 'demo-vms'}); watching:\n", flush=True)
        watch = subprocess.run([sys.executable, "-m", "common.cli", "watch", name, "--interval", "1",
                                "--timeout", str(args.timeout)], cwd=ROOT, env=env)
        elapsed = time.monotonic() - started
        if watch.returncode != 0:
            print(f"demo: not every node reached ready; see {data / 'demo-vms'}", file=sys.stderr)
            return 1
        print(f"demo: {len(vms)} nodes ready {elapsed:.0f} s after their VMs started")
        return 0
    finally:
        for vm in vms:
            vm.wait(15)
            vm.stop()
        if server is not None:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    sys.exit(main())
