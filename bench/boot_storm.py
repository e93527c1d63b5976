#!/usr/bin/env python3
"""Boot storm: N machines ask for their chainloader and node script at once.

Registers N nodes (default 10,000) in a fresh deployment, fires
`GET /boot/boot.ipxe` + `GET /boot/ipxe?mac=...` for each with concurrency C,
prints requests/s, p50/p99 latency and errors, then verifies through the API
that every node is `booting` with exactly one boot event.

    python bench/boot_storm.py --start-server              # its own server + embedded PostgreSQL
    python bench/boot_storm.py --url http://127.0.0.1:8080 --token ADMIN
"""

from __future__ import annotations

import argparse
import collections
import os
import secrets
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.server import RunningServer  # noqa: E402  (the tests' own way to start `bootfleet serve`)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


class Storm:
    def __init__(self, url: str, token: str, concurrency: int):
        self.url = url.rstrip("/")
        self.admin = {"Authorization": f"Bearer {token}"}
        self.concurrency = concurrency
        self.local = threading.local()

    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def run_all(self, label: str, jobs: list, work) -> tuple[list[float], list[str], float]:
        latencies: list[float] = []
        errors: list[str] = []
        done = [0]
        lock = threading.Lock()
        started = time.perf_counter()

        def one(job):
            try:
                times = work(job)
                with lock:
                    latencies.extend(times)
            except Exception as e:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(f"{job}: {e}")
            with lock:
                done[0] += 1
                if done[0] % max(1, len(jobs) // 10) == 0:
                    print(f"  {label}: {done[0]}/{len(jobs)}", file=sys.stderr, flush=True)

        with ThreadPoolExecutor(self.concurrency) as pool:
            list(pool.map(one, jobs))
        return latencies, errors, time.perf_counter() - started

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        start = time.perf_counter()
        resp = self.session().request(method, self.url + path, timeout=60, **kwargs)
        elapsed = time.perf_counter() - start
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:200]}")
        resp.elapsed_s = elapsed
        return resp

    def register(self, deployment: str, macs: list[str]) -> None:
        profile = {"name": deployment, "kernel": "vmlinuz", "initrds": ["initrd.img"],
                   "args": "console=ttyS0 cfg={{ config_url }} st={{ status_url }}"}
        self.call("POST", "/config/api/v1/profiles", json=profile, headers=self.admin)
        self.call("POST", "/config/api/v1/deployments", json={"name": deployment, "profile": deployment,
                                                              "count": len(macs)}, headers=self.admin)

        def create(mac):
            self.call("POST", "/config/api/v1/nodes", json={"macs": [mac], "deployment": deployment},
                      headers=self.admin)
            return []

        _, errors, took = self.run_all("register", macs, create)
        if errors:
            raise SystemExit(f"registration failed for {len(errors)} nodes, first: {errors[0]}")
        print(f"registered {len(macs)} nodes in {took:.1f} s", flush=True)

    def boot(self, mac: str) -> list[float]:
        chain = self.call("GET", "/boot/boot.ipxe")
        script = self.call("GET", "/boot/ipxe", params={"mac": mac, "arch": "x86_64", "platform": "pcbios"})
        if "\nkernel " not in script.text:
            raise RuntimeError(f"no kernel line for {mac}: {script.text[:120]!r}")
        return [chain.elapsed_s, script.elapsed_s]

    def verify(self, deployment: str, count: int) -> list[str]:
        problems = []
        status = self.call("GET", f"/status/deployments/{deployment}", headers=self.admin).json()
        if status["counts"]["booting"] != count:
            problems.append(f"{status['counts']['booting']} of {count} nodes are booting: {status['counts']}")
        boot_events = collections.Counter()
        cursor = 0
        while True:
            page = self.call("GET", "/status/events", params={"deployment": deployment, "since": cursor,
                                                              "limit": 5000}, headers=self.admin).json()
            for event in page["events"]:
                if event["stage"] == "booting":
                    boot_events[event["node_id"]] += 1
            if not page["events"]:
                break
            cursor = page["next"]
        if len(boot_events) != count:
            problems.append(f"{len(boot_events)} of {count} nodes have a boot event")
        repeated = [n for n, c in boot_events.items() if c != 1]
        if repeated:
            problems.append(f"{len(repeated)} nodes have more than one boot event")
        return problems


def start_server(port: int, workers: int, threads: int) -> RunningServer:
    """`bootfleet serve` with its own data dir, embedded PostgreSQL and admin token."""
    env = {"BOOTFLEET_LOG_LEVEL": "WARNING", "BOOTFLEET_DATABASE_URL": None, "BOOTFLEET_ADMIN_TOKEN": None}
    try:
        return RunningServer(env=env, workers=workers, threads=threads, port=port, timeout=60)
    except RuntimeError as e:
        raise SystemExit(f"server did not start: {e}") from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("BOOTFLEET_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--token", default=os.environ.get("BOOTFLEET_ADMIN_TOKEN"))
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--start-server", action="store_true", help="start bootfleet serve with its own database")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (with --start-server)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (with --start-server)")
    args = parser.parse_args()

    server = None
    if args.start_server:
        server = start_server(args.port, args.workers, args.threads)
        args.url, args.token = server.url, server.admin_token
        print(f"started bootfleet serve on {args.url} ({args.workers} workers x {args.threads} threads;"
              f" log {server.log_path})")
    if not args.token:
        raise SystemExit("give --token (or BOOTFLEET_ADMIN_TOKEN), or use --start-server")
    try:
        storm = Storm(args.url, args.token, args.concurrency)
        deployment = f"storm-{secrets.token_hex(3)}"
        prefix = "02:" + ":".join(secrets.token_hex(1) for _ in range(2))
        macs = [f"{prefix}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}" for i in range(args.nodes)]
        storm.register(deployment, macs)
        latencies, errors, took = storm.run_all("boot", macs, storm.boot)
        requests_done = len(latencies)
        print(f"\nboot storm: {args.nodes} nodes, concurrency {args.concurrency}")
        print(f"  requests     {requests_done} ({requests_done / took:.0f} requests/s over {took:.1f} s)")
        if latencies:
            print(f"  latency      p50 {percentile(latencies, 50) * 1000:.1f} ms   "
                  f"p99 {percentile(latencies, 99) * 1000:.1f} ms   "
                  f"mean {statistics.fmean(latencies) * 1000:.1f} ms")
        print(f"  errors       {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
        problems = storm.verify(deployment, args.nodes)
        print("  verified     " + ("every node booting with exactly one boot event" if not problems
                                   else "; ".join(problems)))
        return 1 if errors or problems else 0
    finally:
        if server:
            server.stop(timeout=20)


if __name__ == "__main__":
    sys.exit(main())
