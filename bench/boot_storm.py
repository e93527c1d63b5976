#!/usr/bin/env python3
"""Boot storm: a fleet asks for its boot scripts at once, measured with wrk side by side with a
functions-framework hello world in the same run.

`make bench` runs this with --start-server: it starts `bootfleet serve` (its defaults: gunicorn,
2 workers x 8 threads, embedded PostgreSQL) and the hello world (bench/hello/main.py under
functions-framework with the same gunicorn workers and threads), registers N nodes (default
3,000) through the operator API, then runs wrk (1 thread, 50 connections, 10 s by default;
bench/storm.lua cycles through the nodes' MACs) against, in turn:

    hello world      GET /ipxe?mac=...        a functions-framework function answering an iPXE script
    chainloader      GET /boot/boot.ipxe      bootfleet, no database
    floor            GET /?mac=...            the least code that does a node script's job (bench/floor/main.py:
                                              functions-framework, pg8000, one prepared statement, a signed
                                              token), on the same database, on N nodes of its own
    node script      GET /boot/ipxe?mac=...   bootfleet: find the node, move it to booting, its script

and prints requests/s, the ratio to the hello world and to the floor, p50/p99 latency and errors
for each, and the CPU each part of the machine spent per request. Then
it asks the nodes wrk did not reach (and those of its last requests) once more, and verifies through the API that every node
is booting with exactly one boot event (0 lost: every `booting` node has its event; 0 doubled:
none has two, however often wrk asked), and exits 1 on any error or failed check.
wrk comes from Debian (`apt-get install wrk`); run as root, the bench installs it.

    python bench/boot_storm.py --start-server                # what `make bench` runs
    python bench/boot_storm.py --start-server --nodes 10000 --duration 30
    python bench/boot_storm.py --url http://127.0.0.1:8080 --token ADMIN   # a server already running
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.server import RunningServer, free_port, stop_process  # noqa: E402  (the tests' own way to start `bootfleet serve`)

LUA = ROOT / "bench" / "storm.lua"
# issue 24: the node script at >= 0.8 x the floor; the server's CPU per node script <= 1.5 x the hello
# world's; PostgreSQL's <= 0.5 ms per boot
TARGET_FLOOR, TARGET_SERVER_CPU, TARGET_DATABASE_MS = 0.8, 1.5, 0.5


def find_wrk() -> str:
    """wrk's path; installs Debian's package when run as root, else says how."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk: apt-get install -y wrk", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
            subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("the boot storm needs wrk: sudo apt-get install wrk")


class Function:
    """One function under functions-framework (gunicorn), as its container runs it: bench/hello/main.py
    (target hello), or a bootfleet function with the given extra environment."""

    def __init__(self, target: str, source: Path, workers: int, threads: int, env: dict | None = None,
                 probe: str = "/ipxe"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "WORKERS": str(workers), "THREADS": str(threads), **(env or {})}
        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"bootfleet-{target}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("functions-framework")), "--target", target, "--source", str(source),
             "--host", "127.0.0.1", "--port", str(self.port)],
            env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{target} exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                requests.get(self.url + probe, timeout=1)
                return
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.1)
        self.stop()
        raise SystemExit(f"{target} did not answer within 60 s")

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


class Fleet:
    """N nodes registered through the operator API, in a deployment of their own."""

    def __init__(self, url: str, token: str, count: int):
        self.url = url.rstrip("/")
        self.admin = {"Authorization": f"Bearer {token}"}
        self.count = count
        self.deployment = f"storm-{secrets.token_hex(3)}"
        self.prefix = "02:" + ":".join(secrets.token_hex(1) for _ in range(2))

    def mac(self, index: int) -> str:  # as bench/storm.lua makes them
        return f"{self.prefix}:{index >> 16 & 255:02x}:{index >> 8 & 255:02x}:{index & 255:02x}"

    def call(self, session: requests.Session, method: str, path: str, **kwargs) -> requests.Response:
        resp = session.request(method, self.url + path, headers=self.admin, timeout=60, **kwargs)
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:200]}")
        return resp

    def register(self, concurrency: int = 16) -> float:
        started = time.perf_counter()
        with requests.Session() as s:
            self.call(s, "POST", "/config/api/v1/profiles", json={
                "name": self.deployment, "kernel": "vmlinuz", "initrds": ["initrd.img"],
                "args": "console=ttyS0 cfg={{ config_url }} st={{ status_url }}"})
            self.call(s, "POST", "/config/api/v1/deployments", json={
                "name": self.deployment, "profile": self.deployment, "count": self.count})
        local = threading.local()

        def create(index: int) -> None:
            if not hasattr(local, "session"):
                local.session = requests.Session()
            self.call(local.session, "POST", "/config/api/v1/nodes",
                      json={"macs": [self.mac(index)], "deployment": self.deployment})

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(create, range(self.count)))
        return time.perf_counter() - started

    def settle(self, session: requests.Session) -> dict:
        """The deployment's counts by stage, once they stop changing: wrk stops with requests in
        flight, which the server finishes."""
        counts, deadline = None, time.monotonic() + 60
        while time.monotonic() < deadline:
            now = self.call(session, "GET", f"/status/deployments/{self.deployment}").json()["counts"]
            if now == counts:
                break
            counts = now
            time.sleep(1)
        return counts

    def events(self, session: requests.Session):
        """Every event of the deployment, oldest first, page by page."""
        cursor = 0
        while True:
            page = self.call(session, "GET", "/status/events", params={
                "deployment": self.deployment, "since": cursor, "limit": 5000}).json()
            if not page["events"]:
                return
            yield from page["events"]
            cursor = page["next"]

    def complete(self, concurrency: int = 16) -> tuple[int, int]:
        """Ask every node still `registered` (wrk did not reach it, or its request was among those in
        flight when wrk stopped) for its script once: every node has then been asked. Returns
        (nodes asked, wrong answers)."""
        with requests.Session() as s:
            self.settle(s)
            macs, offset = [], 0
            while True:
                page = self.call(s, "GET", "/config/api/v1/nodes", params={
                    "deployment": self.deployment, "stage": "registered", "limit": 1000, "offset": offset}).json()
                items = page["items"]
                macs += [node["macs"][0] for node in items]
                offset += len(items)
                if not items or offset >= page["total"]:
                    break
        local = threading.local()
        wrong = [0]

        def ask(mac: str) -> None:
            if not hasattr(local, "session"):
                local.session = requests.Session()
            resp = local.session.get(f"{self.url}/boot/ipxe", params={"mac": mac}, timeout=60)
            if resp.status_code != 200 or "\nkernel " not in resp.text:
                wrong[0] += 1

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(ask, macs))
        return len(macs), wrong[0]

    def verify(self, answered: int) -> tuple[dict, list[str]]:
        """Every node that was asked (`answered`: how many install scripts were answered, at most
        the fleet) is booting with exactly one boot event: (figures, problems)."""
        with requests.Session() as s:
            counts = self.settle(s)
            boot_events: collections.Counter = collections.Counter()
            for event in self.events(s):
                if event["stage"] == "booting" and event["kind"] == "stage":
                    boot_events[event["node_id"]] += 1
        booting = counts.get("booting", 0)
        figures = {"booting": booting, "with_event": len(boot_events),
                   "lost": abs(booting - len(boot_events)),
                   "doubled": sum(1 for c in boot_events.values() if c > 1)}
        problems = []
        if figures["lost"]:
            problems.append(f"{booting} nodes booting but {len(boot_events)} with a boot event")
        if figures["doubled"]:
            problems.append(f"{figures['doubled']} nodes with more than one boot event")
        expected = min(self.count, answered)
        if booting < expected:
            problems.append(f"{answered} install scripts answered but only {booting} of {self.count} nodes booting")
        return figures, problems


def run_wrk(wrk: str, url: str, path: str, fleet: Fleet, expect: str, args, connections: int | None = None,
            meter: CpuMeter | None = None) -> dict:
    before = meter.snapshot() if meter else None
    command = [wrk, f"-t{args.threads_wrk}", f"-c{connections or args.connections}", f"-d{args.duration}s", "--timeout", "10s",
               "-s", str(LUA), url, "--", path, fleet.prefix, str(fleet.count), expect]
    out = subprocess.run(command, capture_output=True, text=True, check=False, timeout=args.duration + 120)
    line = next((x for x in out.stdout.splitlines() if x.startswith("STORM ")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({out.returncode}): {out.stdout[-1000:]} {out.stderr[-1000:]}")
    result = json.loads(line.removeprefix("STORM "))
    result["rps"] = result["requests"] / result["seconds"]
    if meter:
        result["cpu_ms"] = CpuMeter.per_request(before, meter.snapshot(), result["requests"])
    return result


class CpuMeter:
    """CPU seconds by part of the system while a target runs, from /proc: the server under test's
    process tree (gunicorn master and workers), its PostgreSQL (the postmaster whose command line
    names the server's data directory, and its backends) and wrk (this process's children).
    What says whether the 2 cores went to Python or to the database."""

    def __init__(self, server_pid: int | None, data_dir: Path | None = None):
        self.server_pid, self.data_dir = server_pid, str(data_dir) if data_dir else None
        self.tick = os.sysconf("SC_CLK_TCK")

    def _processes(self) -> dict[int, tuple[int, str, float]]:
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # gone meanwhile
            fields = stat.rsplit(")", 1)[1].split()
            found[int(entry)] = (int(fields[1]), cmdline, (int(fields[11]) + int(fields[12])) / self.tick)
        return found

    def snapshot(self) -> dict[str, float]:
        procs = self._processes()
        children = collections.defaultdict(list)
        for pid, (ppid, _, _) in procs.items():
            children[ppid].append(pid)

        def tree(roots) -> set[int]:
            seen, todo = set(), list(roots)
            while todo:
                pid = todo.pop()
                if pid in procs and pid not in seen:
                    seen.add(pid)
                    todo += children[pid]
            return seen

        database = tree(pid for pid, (_, cmd, _) in procs.items()
                        if self.data_dir and "postgres" in cmd.split(" ")[0] and self.data_dir in cmd)
        server = tree([self.server_pid] if self.server_pid else []) - database
        wrk = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {"server": sum(procs[p][2] for p in server), "database": sum(procs[p][2] for p in database),
                "wrk": wrk.ru_utime + wrk.ru_stime}

    @staticmethod
    def per_request(before: dict, after: dict, requests_done: int) -> dict[str, float]:
        """Milliseconds of CPU per request for each part."""
        return {k: 1000 * (after[k] - before[k]) / max(requests_done, 1) for k in before}


def short(frame: str) -> str:
    """`handler (/…/site-packages/pkg/mod.py:12)` -> `handler (pkg/mod.py)`."""
    match = re.match(r"^(.*) \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame
    name, path = match.groups()
    for marker in ("site-packages/", "/lib/common/", "/functions/", "/lib/python3"):
        if marker in path:  # lib/common/bootfleet/db/boot.py -> bootfleet/db/boot.py
            path = ("functions/" if marker == "/functions/" else "") + path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


class Profile:
    """py-spy sampling `bootfleet serve` and its workers while one target runs (--profile):
    collapsed stacks to a file, then the functions that took the most samples."""

    def __init__(self, pid: int, seconds: int, out: Path):
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            raise SystemExit("--profile needs py-spy: pip install py-spy")
        self.out = out
        self.proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--subprocesses", "--duration", str(seconds),
                                      "--rate", "250", "--format", "raw", "--output", str(out), "--nonblocking", "--gil"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def report(self, top: int = 20) -> None:
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if not self.out.exists():
            print(f"py-spy wrote no profile: {self.proc.stderr.read().decode()[-500:]}")
            return
        own: collections.Counter = collections.Counter()
        inclusive: collections.Counter = collections.Counter()
        total = 0
        for line in self.out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = [short(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
            if not frames:
                continue
            total += int(count)
            own[frames[-1]] += int(count)
            for frame in set(frames):
                if any(part in frame for part in ("bootfleet/", "(common/", "pg8000/", "functions/", "main.py")):
                    inclusive[frame] += int(count)
        print(f"\nprofile of the node-script run ({total} busy samples; collapsed stacks in {self.out}):")
        print("  most samples in the function itself:")
        for frame, count in own.most_common(top):
            print(f"    {100 * count / max(total, 1):5.1f}%  {frame}")
        print("  most samples under a bootfleet or pg8000 function:")
        for frame, count in inclusive.most_common(top):
            print(f"    {100 * count / max(total, 1):5.1f}%  {frame}")


def print_row(name: str, r: dict, base: float, floor: float | None = None) -> None:
    versus = f"{r['rps'] / floor:>8.2f}x" if floor else f"{'-':>9}"
    print(f"{name:14}{r['rps']:>11.0f}{r['rps'] / base:>7.2f}x{versus}{r['p50_us'] / 1000:>9.1f}"
          f"{r['p99_us'] / 1000:>9.1f}{r['errors'] + r['bad']:>8}{r['requests']:>10}", flush=True)


def server_env(server: RunningServer) -> dict:
    """What a function started beside `bootfleet serve` needs to use its database and tokens."""
    database = next(line.split()[-1] for line in server.output().splitlines() if line.strip().startswith("database"))
    return {"BOOTFLEET_DATABASE_URL": database, "BOOTFLEET_ADMIN_TOKEN": server.admin_token,
            "BOOTFLEET_TOKEN_SECRET": json.loads((server.data / "secrets.json").read_text())["token_secret"]}


def floor(wrk: str, server: RunningServer, fleet: Fleet, args) -> dict:
    """The floor (bench/floor/main.py) under the same gunicorn settings, on the same database."""
    function = Function("floor", ROOT / "bench" / "floor" / "main.py", args.workers, args.threads,
                        server_env(server), probe="/?mac=00:00:00:00:00:00")
    try:
        return run_wrk(wrk, function.url, "/", fleet, "\nkernel ", args, meter=CpuMeter(function.proc.pid, server.data))
    finally:
        function.stop()


def print_cpu(runs: dict) -> None:
    """Where the machine's CPU went, per request: the server's Python, its PostgreSQL, wrk."""
    measured = {name: r["cpu_ms"] for name, r in runs.items() if "cpu_ms" in r}
    if not measured:
        return
    print(f"\nCPU per request, ms{'server':>9}{'database':>10}{'wrk':>7}{'total':>8}")
    for name, cpu in measured.items():
        total = sum(cpu.values())
        database = f"{cpu['database']:.2f}" if cpu["database"] else "-"
        print(f"{name:19}{cpu['server']:>9.2f}{database:>10}{cpu['wrk']:>7.2f}{total:>8.2f}")
    node, hello = measured.get("node script"), measured.get("hello world")
    if node and hello and node["database"]:
        cores = os.cpu_count() or 1
        cap = 1000 * cores / node["database"]
        print(f"the database alone takes {node['database']:.2f} ms of CPU per node script: on {cores} cores shared"
              f" with nothing else it would answer at most {cap:,.0f}/s ({cap / runs['hello world']['rps']:.2f} x"
              f" this run's hello world); the server's Python takes {node['server'] / hello['server']:.1f} x"
              f" the hello world's per request")


def print_targets(runs: dict) -> None:
    """Issue 24's targets, each with this run's figure."""
    node, hello, low = runs["node script"], runs["hello world"], runs.get("floor")

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    if low:
        ratio = node["rps"] / low["rps"]
        print(f"target: node script >= {TARGET_FLOOR} x the floor: {ratio:.2f} x ({verdict(ratio >= TARGET_FLOOR)})")
    if "cpu_ms" in node and "cpu_ms" in hello:
        server = node["cpu_ms"]["server"] / hello["cpu_ms"]["server"]
        print(f"target: server CPU per node script <= {TARGET_SERVER_CPU} x the hello world's: {server:.2f} x"
              f" ({node['cpu_ms']['server']:.2f} ms against {hello['cpu_ms']['server']:.2f}; "
              f"{verdict(server <= TARGET_SERVER_CPU)})")
        database = node["cpu_ms"]["database"]
        print(f"target: PostgreSQL CPU per boot <= {TARGET_DATABASE_MS} ms: {database:.2f} ms"
              f" ({verdict(database <= TARGET_DATABASE_MS)})")


def one_instance(wrk: str, server: RunningServer, fleet: Fleet, args) -> dict:
    """The boot function as one Code Engine app instance runs it (the container's entrypoint:
    functions-framework, WORKERS=1, THREADS = container concurrency, a pool as large), loaded with
    exactly its container concurrency: the per-instance throughput that sizes the boot app."""
    concurrency = args.instance_concurrency
    env = {**server_env(server), "BOOTFLEET_DB_POOL_SIZE": str(concurrency), "BOOTFLEET_IMAGES_DIR": str(server.data / "images"),
           # wrk asks from loopback: a boot network, as `bootfleet serve` has it by default
           "BOOTFLEET_BOOT_NETWORKS": "127.0.0.0/8"}
    with tempfile.TemporaryDirectory(prefix="bootfleet-metrics-") as metrics_dir:  # as the container sets it
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        function = Function("boot", ROOT / "functions" / "boot" / "main.py", 1, concurrency, env, probe="/boot.ipxe")
        try:
            return run_wrk(wrk, function.url, "/ipxe", fleet, "\nkernel ", args, connections=concurrency,
                           meter=CpuMeter(function.proc.pid, server.data))
        finally:
            function.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("BOOTFLEET_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--token", default=os.environ.get("BOOTFLEET_ADMIN_TOKEN"))
    parser.add_argument("--start-server", action="store_true", help="start bootfleet serve with its own database")
    parser.add_argument("--nodes", type=int, default=3000)
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per target")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads-wrk", type=int, default=1, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (both servers)")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker (both servers)")
    parser.add_argument("--profile", metavar="FILE",
                        help="sample bootfleet serve with py-spy during the node-script run (collapsed stacks to FILE)")
    parser.add_argument("--only", metavar="ROWS", default="hello,chainloader,floor,node",
                        help="the rows to run, of hello,chainloader,floor,node (the hello world always runs:"
                             " every ratio is to it)")
    parser.add_argument("--instance-concurrency", type=int, default=10,
                        help="one Code Engine boot instance: its container concurrency (threads and pool; 0: skip)")
    args = parser.parse_args()

    wrk = find_wrk()
    server = hello = None
    try:
        if args.start_server:
            # Serve's defaults, but for the per-client limit on /boot/ (20/s): wrk is one address
            # standing in for thousands of machines, each of which asks a handful of times.
            server = RunningServer(env={"BOOTFLEET_DATABASE_URL": None, "BOOTFLEET_ADMIN_TOKEN": None,
                                        "BOOTFLEET_BOOT_RATE_LIMIT": "0"},
                                   workers=args.workers, threads=args.threads, timeout=90)
            args.url, args.token = server.url, server.admin_token
            print(f"bootfleet serve on {args.url} ({args.workers} workers x {args.threads} threads; "
                  f"log {server.log_path})", flush=True)
        if not args.token:
            raise SystemExit("give --token (or BOOTFLEET_ADMIN_TOKEN), or use --start-server")
        hello = Function("hello", ROOT / "bench" / "hello" / "main.py", args.workers, args.threads)
        print(f"hello world on {hello.url} (functions-framework, {args.workers} workers x {args.threads} threads)",
              flush=True)
        meter = CpuMeter(server.proc.pid, server.data) if server else None  # our own server: its processes are known
        fleet = Fleet(args.url, args.token, args.nodes)
        took = fleet.register()
        print(f"registered {args.nodes} nodes in {took:.1f} s (deployment {fleet.deployment})", flush=True)
        floor_fleet = instance_fleet = None
        rows = set(args.only.split(","))
        if server and "floor" in rows:
            floor_fleet = Fleet(args.url, args.token, args.nodes)
            took = floor_fleet.register()
            print(f"registered {args.nodes} more nodes for the floor in {took:.1f} s", flush=True)
        if args.instance_concurrency and server:
            instance_fleet = Fleet(args.url, args.token, args.nodes)
            took = instance_fleet.register()
            print(f"registered {args.nodes} more nodes for one boot instance in {took:.1f} s", flush=True)

        print(f"wrk: {args.threads_wrk} thread, {args.connections} connections, {args.duration} s per target",
              flush=True)
        runs = {
            "hello world": run_wrk(wrk, hello.url, "/ipxe", fleet, "\nkernel ", args, meter=CpuMeter(hello.proc.pid)),
        }
        if "chainloader" in rows:
            runs["chainloader"] = run_wrk(wrk, args.url, "/boot/boot.ipxe", fleet, "chain ", args, meter=meter)
        if floor_fleet:
            runs["floor"] = floor(wrk, server, floor_fleet, args)
        profile = Profile(server.proc.pid, args.duration, Path(args.profile)) if args.profile and server else None
        runs["node script"] = run_wrk(wrk, args.url, "/boot/ipxe", fleet, "\nkernel ", args, meter=meter)
        if profile:
            profile.report()
        base, floor_rps = runs["hello world"]["rps"], runs.get("floor", {}).get("rps")
        print(f"\n{'':14}{'requests/s':>11}{'hello':>8}{'floor':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
              f"{'requests':>10}")
        for name, r in runs.items():
            print_row(name, r, base, floor_rps)

        if instance_fleet:
            runs["one instance"] = one_instance(wrk, server, instance_fleet, args)
            print_row("one instance", runs["one instance"], base, floor_rps)
            print(f"{'':14}one Code Engine boot instance: functions-framework, 1 worker x "
                  f"{args.instance_concurrency} threads, pool {args.instance_concurrency}, "
                  f"wrk -c{args.instance_concurrency} (its container concurrency)")

        print_cpu(runs)
        node = runs["node script"]
        answered = node["requests"] - node["bad"]
        asked, wrong = fleet.complete()
        if asked:
            print(f"\nasked the {asked} nodes still registered (not reached by wrk, or its last requests) once each",
                  flush=True)
            node["bad"] += wrong
            answered = args.nodes
        figures, problems = fleet.verify(answered)
        print(f"\nverified: {figures['booting']} of {args.nodes} nodes booting, "
              f"{figures['with_event']} with a boot event; lost {figures['lost']}, doubled {figures['doubled']}")
        if instance_fleet:
            one = runs["one instance"]
            one["bad"] += instance_fleet.complete()[1]
            more, other_problems = instance_fleet.verify(args.nodes)
            print(f"verified (one instance): {more['booting']} of {args.nodes} nodes booting, lost {more['lost']},"
                  f" doubled {more['doubled']}")
            problems += other_problems
        for problem in problems:
            print(f"  FAILED: {problem}")
        print_targets(runs)
        total_errors = sum(r["errors"] + r["bad"] for r in runs.values())
        return 1 if problems or total_errors else 0
    finally:
        if hello:
            hello.stop()
        if server:
            server.stop(timeout=20)
            shutil.rmtree(server.data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
