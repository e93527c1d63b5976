#!/usr/bin/env python3
"""A real node, timed: QEMU start to `ready`, one VM at a time, several runs.

Starts `bootfleet serve` (embedded PostgreSQL) on a free port, uploads the e2e node's
kernel and initramfs (tests/e2e/node_image.py), registers one node per run and boots it
in QEMU (lib/common/bootfleet/providers/vpc/qemu.py: Debian's iPXE under BIOS, or OVMF with iPXE's
EFI NIC ROM under UEFI); prints the seconds from QEMU start to each stage event the
server recorded. docs/benchmarks.md ("A real node") has the figures.

    python bench/real_node.py [--runs 3] [--firmware bios|uefi] [--logs DIR]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from node_image import build  # noqa: E402
from support.server import RunningServer  # noqa: E402

from bootfleet.providers.vpc import qemu  # noqa: E402

PROFILE = {
    "name": "bench-node",
    "kernel": "bench/vmlinuz",
    "initrds": ["bench/initrd.img"],
    "args": "console=ttyS0 panic=5 bootfleet.node={{ node.id }} bootfleet.config={{ config_url }} "
    "bootfleet.status={{ status_url }}",
    "config_format": "cloud-init",
    "config_template": "#cloud-config\nhostname: {{ node.hostname }}\n",
}
STAGES = ("booting", "configuring", "ready")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--firmware", choices=["bios", "uefi"], default="bios")
    parser.add_argument("--logs", type=Path, help="keep the serial consoles here")
    parser.add_argument("--kernel-args", default="", help="more kernel arguments, e.g. quiet")
    args = parser.parse_args()
    image = build()
    data = Path(tempfile.mkdtemp(prefix="bootfleet-bench-node-"))
    logs = args.logs or data / "vms"
    server = RunningServer(env={"BOOTFLEET_DATABASE_URL": None, "BOOTFLEET_BASE_URL": None,
                                "BOOTFLEET_LOG_LEVEL": "WARNING"}, data=data, timeout=120)
    try:
        admin = {"Authorization": f"Bearer {server.admin_token}"}
        subprocess.run([sys.executable, "-m", "bootfleet.cli", "images", "upload", "--prefix", "bench",
                        str(image.kernel), str(image.initrd)], cwd=ROOT, env=server.env, check=True,
                       stdout=subprocess.DEVNULL)
        profile = {**PROFILE, "args": f"{PROFILE['args']} {args.kernel_args}".strip()}
        requests.post(f"{server.url}/config/api/v1/profiles", json=profile, headers=admin,
                      timeout=30).raise_for_status()
        rows = []
        for run in range(1, args.runs + 1):
            load = os.getloadavg()[0]
            name, mac = f"bench-node-{run}", f"52:54:00:be:00:{run:02x}"
            node = requests.post(f"{server.url}/config/api/v1/nodes", headers=admin, timeout=30, json={
                "macs": [mac], "hostname": name, "profile": PROFILE["name"]})
            node.raise_for_status()
            started = time.time()
            vm = qemu.start(name, mac, qemu.GUEST_BASE_URL, {qemu.GUEST_ADDRESS: server.port}, log_dir=logs,
                            timeout=300, firmware=args.firmware)
            code = vm.wait(310)
            vm.stop()
            events = requests.get(f"{server.url}/status/nodes/{node.json()['id']}/events", headers=admin,
                                  timeout=30).json()["events"]
            at = {e["stage"]: datetime.datetime.fromisoformat(e["created_at"]).timestamp() - started
                  for e in events if e["kind"] == "stage"}
            if code != 0 or "ready" not in at:
                print(f"run {run}: no ready (qemu exit {code}); see {vm.log_path}", file=sys.stderr)
                return 1
            rows.append([at[s] for s in STAGES])
            print(f"run {run} ({args.firmware}, load {load:.1f}): " +
                  ", ".join(f"{s} {t:.1f} s" for s, t in zip(STAGES, rows[-1])), flush=True)
        medians = [statistics.median(col) for col in zip(*rows)]
        print(f"median of {len(rows)}: " + ", ".join(f"{s} {t:.1f} s" for s, t in zip(STAGES, medians)))
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
