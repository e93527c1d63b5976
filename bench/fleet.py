#!/usr/bin/env python3
"""Fleet: N simulated nodes (default 10,000) through the whole life a real node has, through
`bootfleet serve`'s router, as many at once as --concurrency says.

`make bench-fleet` runs this. It starts `bootfleet serve` (2 workers x 8 threads, embedded
PostgreSQL, serve's defaults but for the per-client limit on /boot/), puts the profile's kernel
and initrd in its image folder, registers the nodes with the bulk import, then runs every node
through the life the e2e node image (tests/e2e/node_image.py) and the bootfleet agent
(bootfleet/agent/script.py) live, each URL taken from the previous answer, as a machine does:

    chainloader   GET /boot/boot.ipxe                      iPXE; the chain URL's ${...} filled in as iPXE does
    node script   GET /boot/ipxe?mac=..&uuid=..&serial=..  same connection (iPXE keeps it); kernel line read
    config        GET bootfleet.config=<URL>               the installer's wget: the cloud-config
    installing    POST bootfleet.status=<URL>              {"stage": "installing", "bytes": 0, "total": T}
    installed     POST the same                            {"stage": "installing", "bytes": T, "total": T} (a repeat)
    rebooting     POST the same                            {"stage": "rebooting", ...}
    ready         POST the config's phone_home url         cloud-init's phone_home form (&stage=ready)

Each program a node runs opens its own connection (iPXE one for its two requests, then wget,
the agent's reports and cloud-init one each), unless --reuse keeps one per node. The load
generator is one asyncio process of its own (raw HTTP/1.1 on 127.0.0.1), so its CPU is counted
apart from the server's and the database's. Prints nodes per minute, the CPU per node of the
server (gunicorn's processes), its PostgreSQL and the generator, each step's p50/p99 latency and
errors; then verifies through the API that every node that started is `ready` with exactly one
stage event per stage (booting, configuring, installing, rebooting, ready: 0 lost, 0 doubled)
and the others are still `registered`, and exits 1 on any error or failed check.

    python bench/fleet.py                                # what `make bench-fleet` runs: 10,000 nodes, 100 at once
    python bench/fleet.py --nodes 300 --concurrency 50   # a quick look
    python bench/fleet.py --nodes 2000 --phased          # the whole fleet through boot, then config, then
                                                         # status: each function's CPU per node (Code Engine sizing)
    python bench/fleet.py --profile /tmp/fleet.prof      # py-spy samples the server during the run
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import resource
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # boot_storm: the bench's Fleet, CpuMeter and Profile
sys.path.insert(0, str(ROOT / "tests"))  # support.server: the one way tests and benchmarks start serve

TARGET_PER_MINUTE = 10_000  # issue 24 item 5
STEPS = ("chainloader", "node script", "config", "installing", "installed", "rebooting", "ready")
STAGES = ("booting", "configuring", "installing", "rebooting", "ready")  # one stage event each
IMAGE_BYTES = 2 * 1024**3  # what the simulated agent says it writes (only reported, never sent)
# What iPXE puts in the chain URL's variables (the chainloader's CHAIN_QUERY); the node's own
# values for ${netX/mac}, ${uuid} and ${serial:uristring} are filled in per node.
IPXE_VARIABLES = {"${hostname:uristring}": "", "${buildarch}": "x86_64", "${platform}": "pcbios"}


# ---------------------------------------------------------------------------------------------
# The load generator: its own process (`fleet.py --generate`, a JSON plan on stdin, a JSON
# result on stdout), plain asyncio with raw HTTP/1.1, so what it costs is its own CPU.

class HttpError(Exception):
    pass


class Connection:
    """One HTTP/1.1 connection to the server; requests are sent one after another on it."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer:
            self.writer.close()
            self.writer = None

    async def request(self, method: str, target: str, agent: str, body: bytes = b"", content_type: str = "",
                      close: bool = False) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        head = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}", f"User-Agent: {agent}",
                "Accept: */*"]
        if method == "POST":
            head += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
        if close:
            head.append("Connection: close")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        status_line, _, rest = (await self.reader.readuntil(b"\r\n\r\n")).partition(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length, chunked, server_closes = None, False, close
        for line in rest.split(b"\r\n"):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and value.strip().lower() == b"close":
                server_closes = True
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            data = b"".join(parts)
        elif length is not None:
            data = await self.reader.readexactly(length)
        else:
            data = await self.reader.read()
            server_closes = True
        if server_closes:
            self.close()
        return status, data


class Generator:
    def __init__(self, plan: dict, cpu_before: float = 0.0):
        self.plan, self.cpu_before = plan, cpu_before  # this interpreter's start is not the run's
        url = urlsplit(plan["url"])
        self.host, self.port = url.hostname, url.port or 80
        self.latency = {step: [] for step in STEPS}
        self.errors: collections.Counter = collections.Counter()
        self.examples: list[str] = []
        self.started = self.done = 0
        self.failed: list[int] = []

    def target(self, url: str) -> str:
        """The path and query of a URL the server handed out (it must point back at the server)."""
        parts = urlsplit(url)
        if (parts.hostname, parts.port or 80) != (self.host, self.port):
            raise HttpError(f"a URL for another server: {url[:120]}")
        return parts.path + (f"?{parts.query}" if parts.query else "")

    async def step(self, name: str, conn: Connection, method: str, url: str, agent: str, body: bytes = b"",
                   content_type: str = "", close: bool = True, expect: str = "") -> str:
        started = time.perf_counter()
        try:
            status, data = await asyncio.wait_for(
                conn.request(method, self.target(url), agent, body, content_type, close), self.plan["timeout"])
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ValueError) as e:
            conn.close()
            raise HttpError(f"{name}: {type(e).__name__}: {e}") from None
        self.latency[name].append(time.perf_counter() - started)
        text = data.decode(errors="replace")
        if status != 200 or expect not in text:
            raise HttpError(f"{name}: {status} {text[:160]!r}")
        if self.plan["think"]:
            await asyncio.sleep(self.plan["think"])
        return text

    def identity(self, index: int) -> dict[str, str]:
        """MAC (as boot_storm.Fleet.mac), SMBIOS UUID and serial, as iPXE reads them off the machine."""
        prefix = self.plan["prefix"]
        mac = f"{prefix}:{index >> 16 & 255:02x}:{index >> 8 & 255:02x}:{index & 255:02x}"
        return {"${netX/mac}": mac, "${uuid}": f"{self.plan['uuid_prefix']}-{index:012x}",
                "${serial:uristring}": quote(f"SN{self.plan['uuid_prefix'][:4]}{index:07d}")}

    async def boot(self, node: dict) -> None:
        """iPXE: the chainloader (DHCP's boot file name), then the chain URL it names, filled in as
        iPXE fills it in, on the same connection; the kernel line's config and status URLs."""
        base = self.plan["url"].rstrip("/")
        ipxe = node["conn"] = Connection(self.host, self.port)
        chain = await self.step("chainloader", ipxe, "GET", f"{base}/boot/boot.ipxe", "iPXE/1.21.1",
                                close=False, expect="chain --autofree ")
        found = re.search(r"chain --autofree (\S+)", chain)
        if not found:
            raise HttpError(f"chainloader: no chain URL in {chain[:200]!r}")
        url = found.group(1)
        for variable, value in {**IPXE_VARIABLES, **self.identity(node["index"])}.items():
            url = url.replace(variable, value)
        if "${" in url:
            raise HttpError(f"chainloader: a variable this bench does not fill in: {url}")
        script = await self.step("node script", ipxe, "GET", url, "iPXE/1.21.1", close=not self.plan["reuse"],
                                 expect="\nkernel ")
        kernel = next((line for line in script.splitlines() if line.startswith("kernel ")), "")
        args = dict(word.split("=", 1) for word in kernel.split()[2:] if "=" in word)
        node["config_url"], node["status_url"] = args.get("bootfleet.config"), args.get("bootfleet.status")
        if not node["config_url"] or not node["status_url"]:
            raise HttpError(f"node script: no bootfleet.config= or bootfleet.status= in {kernel[:200]!r}")

    def connection(self, node: dict) -> Connection:
        """The connection for a node's next program: its own (wget, the agent's reports, cloud-init
        open one each), or the node's one with --reuse."""
        if self.plan["reuse"]:
            return node["conn"]
        node["conn"].close()
        node["conn"] = Connection(self.host, self.port)
        return node["conn"]

    async def config(self, node: dict) -> None:
        """The installer (the node image's /init, the agent) fetches its config with wget."""
        config = await self.step("config", self.connection(node), "GET", node["config_url"], "Wget",
                                 close=not self.plan["reuse"], expect="#cloud-config")
        hostname = re.search(r"^hostname: *(\S+)", config, re.M)
        phone_home = re.search(r"^  url: *(\S+)", config, re.M)
        if not hostname or not phone_home:
            raise HttpError(f"config: no hostname or phone_home url in {config[:200]!r}")
        node["hostname"], node["phone_home"] = hostname.group(1), phone_home.group(1)

    async def status(self, node: dict) -> None:
        """The agent's reports as it writes the image (bootfleet/agent/script.py: installing with
        0 of the image's bytes, installing with all of them, rebooting), then the installed system's
        cloud-init phone_home (the form the config names, &stage=ready)."""
        reports = (("installing", {"stage": "installing", "message": "writing the image to /dev/sda",
                                   "bytes": 0, "total": IMAGE_BYTES}, '"changed":true'),
                   ("installed", {"stage": "installing", "message": "image written and verified",
                                  "bytes": IMAGE_BYTES, "total": IMAGE_BYTES}, '"changed":false'),
                   ("rebooting", {"stage": "rebooting", "message": "image installed on /dev/sda; rebooting into it"},
                    '"changed":true'))
        for name, report, expect in reports:
            await self.step(name, self.connection(node), "POST", node["status_url"], "Wget",
                            json.dumps(report).encode(), "application/json", close=not self.plan["reuse"],
                            expect=expect)
        form = f"hostname={node['hostname']}&instance_id=iid-{node['index']}".encode()
        await self.step("ready", self.connection(node), "POST", node["phone_home"], "Cloud-Init/23.4", form,
                        "application/x-www-form-urlencoded", close=True, expect='"changed":true')

    async def life(self, node: dict, parts) -> None:
        """Some parts of one node's life (all three, or one phase); a failure ends its life."""
        try:
            for part in parts:
                await part(node)
            if parts[-1] == self.status:
                self.done += 1
        except HttpError as e:
            node["failed"] = True
            self.failed.append(node["index"])
            kind = str(e).split(":", 1)[0]
            self.errors[kind] += 1
            if len(self.examples) < 5:
                self.examples.append(f"node {node['index']}: {e}")
        finally:
            if parts[-1] == self.status or node.get("failed"):
                node["conn"].close()

    async def workers(self, nodes, parts, deadline: float) -> None:
        """--concurrency workers, each taking the next node when its last one is through `parts`."""
        todo = iter(nodes)

        async def worker() -> None:
            for node in todo:
                if node.get("failed"):
                    continue
                if parts[0] == self.boot:
                    if time.monotonic() >= deadline:
                        return
                    self.started += 1
                await self.life(node, parts)

        await asyncio.gather(*(worker() for _ in range(self.plan["concurrency"])))

    def cpu(self) -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime - self.cpu_before

    async def progress(self, began: float) -> None:
        while True:
            await asyncio.sleep(5)
            took = time.monotonic() - began
            print(f"  {took:5.0f} s: {self.started} nodes started, {self.done} ready"
                  f" ({60 * self.done / took:,.0f}/min), {len(self.failed)} failed", file=sys.stderr, flush=True)

    async def run(self) -> dict:
        began = time.monotonic()
        deadline = began + (self.plan["duration"] or 1e9)
        ticker = asyncio.ensure_future(self.progress(began))
        nodes = [{"index": i, "conn": Connection(self.host, self.port)} for i in range(self.plan["count"])]
        phases = {}
        if self.plan["phased"]:  # each function's part for the whole fleet, then the next's
            for name, part in (("boot", self.boot), ("config", self.config), ("status", self.status)):
                started = time.monotonic()
                await self.workers(nodes[:self.started] if part != self.boot else nodes, [part], deadline)
                phases[name] = time.monotonic() - started
                print(f"PHASE {name} {self.cpu()}", flush=True)  # the bench takes its CPU snapshot, then says go on
                sys.stdin.readline()
        else:
            await self.workers(nodes, [self.boot, self.config, self.status], deadline)
        seconds = time.monotonic() - began
        ticker.cancel()
        return {"seconds": seconds, "phases": phases, "started": self.started, "done": self.done,
                "failed": self.failed, "errors": dict(self.errors), "examples": self.examples, "cpu_s": self.cpu(),
                "latency": {step: percentiles(values) for step, values in self.latency.items()}}


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"count": len(ordered), "p50_ms": 1000 * pick(0.50), "p99_ms": 1000 * pick(0.99),
            "max_ms": 1000 * ordered[-1]}


def generate() -> int:
    plan = json.loads(sys.stdin.readline())  # stdin stays open: with --phased, a line after each phase
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = asyncio.run(Generator(plan, before.ru_utime + before.ru_stime).run())
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# The bench: the server, the fleet registered, the generator run, the figures, the checks.

def register(fleet, batch: int) -> tuple[float, dict[int, str]]:
    """The profile (the demo profile's shape: kernel args with the node's config and status URLs,
    a cloud-config with its hostname and cloud-init's phone_home to `ready`), the deployment, and
    the nodes through the bulk import in batches (one request and transaction each). Returns the
    seconds it took and each node's id by index."""
    import requests

    from bootfleet.cli.serve import DEMO_PROFILE

    started = time.perf_counter()
    ids: dict[int, str] = {}
    with requests.Session() as s:
        fleet.call(s, "POST", "/config/api/v1/profiles", json={**DEMO_PROFILE, "name": fleet.deployment,
                                                                "metadata": {"purpose": "bench/fleet.py"}})
        fleet.call(s, "POST", "/config/api/v1/deployments", json={
            "name": fleet.deployment, "profile": fleet.deployment, "count": fleet.count})
        for first in range(0, fleet.count, batch):
            indexes = range(first, min(first + batch, fleet.count))
            answer = fleet.call(s, "POST", "/config/api/v1/nodes/import", json={"nodes": [
                {"macs": [fleet.mac(i)], "hostname": f"{fleet.deployment}-{i}", "deployment": fleet.deployment}
                for i in indexes]}).json()
            ids.update(zip(indexes, answer["ids"]))
    return time.perf_counter() - started, ids


def verify(fleet, ids: dict[int, str], started: int, failed: list[int]) -> tuple[dict, list[str]]:
    """Every node that went through its whole life (0..started-1, but those whose life failed in the
    generator) `ready`, with exactly one stage event for each stage of it; none with a stage event
    twice; the nodes never started still `registered`. From the deployment's counts and events."""
    import requests

    with requests.Session() as s:
        counts = fleet.settle(s)
        seen: collections.Counter = collections.Counter()
        other: collections.Counter = collections.Counter()
        for event in fleet.events(s):
            if event["kind"] == "stage" and event["node_id"]:
                seen[(event["node_id"], event["stage"])] += 1
            else:
                other[event["kind"]] += 1
    lived = [ids[i] for i in sorted(set(range(started)) - set(failed))]
    lost = sum(1 for node in lived if any(seen[(node, stage)] == 0 for stage in STAGES))
    doubled = sum(1 for node in ids.values() if any(seen[(node, stage)] > 1 for stage in STAGES + ("registered",)))
    stray = sum(1 for i in range(started, fleet.count) for stage in STAGES if seen[(ids[i], stage)])
    figures = {"lived": len(lived), "ready": counts.get("ready", 0), "registered": counts.get("registered", 0),
               "lost": lost, "doubled": doubled, "other_events": dict(other)}
    problems = []
    if failed:
        problems.append(f"{len(failed)} nodes' lives failed in the generator (their errors above)")
    if figures["ready"] != len(lived) and not failed:
        problems.append(f"{len(lived)} nodes went through their whole life but {figures['ready']} are ready: "
                        + ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    if figures["registered"] != fleet.count - started and not failed:
        problems.append(f"{fleet.count - started} nodes never started but {figures['registered']} are registered")
    if lost:
        problems.append(f"{lost} nodes that went through their whole life lack a stage event of it"
                        f" ({', '.join(STAGES)})")
    if doubled:
        problems.append(f"{doubled} nodes have a stage event twice")
    if stray:
        problems.append(f"{stray} stage events of nodes that never started")
    return figures, problems


def main() -> int:
    if "--generate" in sys.argv[1:]:
        return generate()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10_000, help="nodes in the fleet (default 10,000)")
    parser.add_argument("--concurrency", type=int, default=100,
                        help="nodes in their life at once (default 100); each sends one request at a time")
    parser.add_argument("--duration", type=float, default=0,
                        help="seconds after which no more nodes start (those started finish); 0: every node")
    parser.add_argument("--think", type=float, default=0,
                        help="seconds a node waits between its steps (default 0: the server's work, back to back)")
    parser.add_argument("--reuse", action="store_true",
                        help="one keep-alive connection per node for its whole life (default: one per program,"
                             " as iPXE, wget and cloud-init open them)")
    parser.add_argument("--phased", action="store_true",
                        help="the whole fleet through boot, then config, then status (each function's CPU per"
                             " node, for sizing its Code Engine app) instead of each node's life at once")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers of bootfleet serve")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker (and the pool)")
    parser.add_argument("--batch", type=int, default=2000, help="nodes per bulk import request")
    parser.add_argument("--timeout", type=float, default=60, help="seconds a request may take")
    parser.add_argument("--profile", metavar="FILE", help="sample bootfleet serve with py-spy during the run")
    args = parser.parse_args()
    if args.phased and args.reuse:
        parser.error("--phased keeps no connection between phases: leave out --reuse")

    from boot_storm import CpuMeter, Fleet, Profile
    from support.server import RunningServer

    load = os.getloadavg()
    print(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"({os.cpu_count()} cores)", flush=True)
    # Serve's defaults, but for the per-client limit on /boot/ (20/s, burst 40): the generator is
    # one address standing in for the whole fleet. config and status have no per-client limit.
    server = RunningServer(env={"BOOTFLEET_DATABASE_URL": None, "BOOTFLEET_ADMIN_TOKEN": None,
                                "BOOTFLEET_BOOT_RATE_LIMIT": "0"},
                           workers=args.workers, threads=args.threads, timeout=90)
    generator = profile = None
    try:
        print(f"bootfleet serve on {server.url} ({args.workers} workers x {args.threads} threads; "
              f"log {server.log_path})", flush=True)
        images = server.data / "images"  # what a real fleet's profile has: its kernel and initrd in storage
        images.mkdir(parents=True, exist_ok=True)
        for name in ("vmlinuz", "initrd.img"):
            (images / name).write_bytes(b"\0" * 4096)
        fleet = Fleet(server.url, server.admin_token, args.nodes)
        took, ids = register(fleet, args.batch)
        print(f"registered {args.nodes:,} nodes in {took:.1f} s (bulk import, {args.batch} a request; "
              f"deployment {fleet.deployment})", flush=True)

        plan = {"url": server.url, "prefix": fleet.prefix, "uuid_prefix": secrets.token_hex(4) + "-0000-4000-8000",
                "count": args.nodes, "concurrency": args.concurrency, "duration": args.duration,
                "think": args.think, "reuse": args.reuse, "timeout": args.timeout, "phased": args.phased}
        print(f"fleet: {args.nodes:,} nodes, {args.concurrency} at once, 7 requests each "
              f"({'one connection per node' if args.reuse else 'a connection per program'})", flush=True)
        meter = CpuMeter(server.proc.pid, server.data)
        # py-spy until the generator is done (then SIGINT: it writes what it sampled and ends)
        profile = Profile(server.proc.pid, 3600, Path(args.profile)) if args.profile else None
        marks = [("start", meter.snapshot(), 0.0)]
        generator = subprocess.Popen([sys.executable, __file__, "--generate"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        generator.stdin.write(json.dumps(plan) + "\n")
        generator.stdin.flush()
        result = None
        for line in generator.stdout:
            if line.startswith("PHASE "):  # --phased: one function's part done for the whole fleet
                _, name, cpu = line.split()
                marks.append((name, meter.snapshot(), float(cpu)))
                generator.stdin.write("\n")
                generator.stdin.flush()
            elif line.startswith("RESULT "):
                result = json.loads(line.removeprefix("RESULT "))
        generator.wait()
        marks.append(("end", meter.snapshot(), result["cpu_s"] if result else 0.0))
        if profile:
            profile.proc.send_signal(signal.SIGINT)
        if generator.returncode != 0 or result is None:
            raise SystemExit(f"the generator failed ({generator.returncode})")
        if profile:
            print("\npy-spy over the whole fleet run (boot_storm's Profile: its heading says the node-script run)")
            profile.report()
        return report(args, fleet, ids, result, marks)
    finally:
        for proc in (generator, profile.proc if profile else None):  # ended early (Ctrl-C, an error)
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        server.stop(timeout=20)


def report(args, fleet, ids: dict[int, str], result: dict, marks: list) -> int:
    done, seconds = result["done"], result["seconds"]
    per_minute = 60 * done / seconds if seconds else 0
    print(f"\n{done:,} nodes ready in {seconds:.1f} s: {per_minute:,.0f} nodes/min "
          f"({7 * done / seconds:,.0f} requests/s); {len(result['failed'])} failed", flush=True)
    print(f"\n{'step':14}{'requests':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for step in STEPS:
        lat = result["latency"][step]
        if lat["count"]:
            print(f"{step:14}{lat['count']:>10,}{lat['p50_ms']:>9.1f}{lat['p99_ms']:>9.1f}{lat['max_ms']:>9.0f}")
    (_, before, _), (_, after, _) = marks[0], marks[-1]
    cpu = {part: 1000 * (after[part] - before[part]) / max(done, 1) for part in ("server", "database")}
    cpu["generator"] = 1000 * result["cpu_s"] / max(done, 1)
    total = sum(cpu.values())
    busy = total * done / 1000 / seconds if seconds else 0
    print(f"\nCPU per node, ms{'server':>9}{'database':>10}{'generator':>11}{'total':>8}")
    print(f"{'whole life':16}{cpu['server']:>9.1f}{cpu['database']:>10.1f}{cpu['generator']:>11.1f}{total:>8.1f}")
    if result["phases"]:  # each function's part: the CPU between one phase's end and the next's
        for (_, then, gen_then), (name, now, gen_now) in zip(marks[:-2], marks[1:-1]):
            part = {k: 1000 * (now[k] - then[k]) / max(done, 1) for k in ("server", "database")}
            gen = 1000 * (gen_now - gen_then) / max(done, 1)
            print(f"{'  ' + name:16}{part['server']:>9.1f}{part['database']:>10.1f}{gen:>11.1f}"
                  f"{part['server'] + part['database'] + gen:>8.1f}   ({result['phases'][name]:.1f} s)")
    print(f"{'per request':16}{cpu['server'] / 7:>9.2f}{cpu['database'] / 7:>10.2f}{cpu['generator'] / 7:>11.2f}"
          f"{total / 7:>8.2f}")
    cores = os.cpu_count() or 1
    print(f"the run kept {busy:.2f} of {cores} cores busy; at {cpu['server'] + cpu['database']:.1f} ms of server and"
          f" database CPU a node, {cores} cores would finish at most"
          f" {60_000 * cores / max(cpu['server'] + cpu['database'], 1e-9):,.0f} nodes/min")
    for kind, count in result["errors"].items():
        print(f"  errors at {kind}: {count}")
    for example in result["examples"]:
        print(f"    {example}")

    figures, problems = verify(fleet, ids, result["started"], result["failed"])
    print(f"\nverified: {figures['ready']:,} nodes ready of the {figures['lived']:,} that went through their life, "
          f"{figures['registered']:,} registered ({fleet.count - result['started']:,} never started); "
          f"lost {figures['lost']}, doubled {figures['doubled']}"
          + (f"; other events: {figures['other_events']}" if figures["other_events"] else ""))
    for problem in problems:
        print(f"  FAILED: {problem}")
    print(f"target: {TARGET_PER_MINUTE:,} nodes a minute, 0 lost: {per_minute:,.0f} a minute "
          f"({'met' if per_minute >= TARGET_PER_MINUTE else 'not met'}), lost {figures['lost']}")
    return 1 if problems or result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
