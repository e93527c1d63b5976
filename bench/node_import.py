#!/usr/bin/env python3
"""Bulk node import: `bootfleet node import FILE` with N nodes (default 8,000) from a CSV,
all or none, against a `bootfleet serve` this script starts on a fresh embedded PostgreSQL.

Times the whole command as an operator runs it (the CLI's start, reading the file, sending
it, the server checking every row and inserting them in one transaction), then a refused
file of the same size with one bad row (nothing written), then a filtered listing.

    python bench/node_import.py [--nodes 8000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # support.server: the one way tests and benchmarks start serve

from support.server import RunningServer  # noqa: E402


def csv_rows(n: int) -> list[str]:
    return ["mac,hostname,ip,labels"] + [
        f"52:54:02:{i // 65536:02x}:{i // 256 % 256:02x}:{i % 256:02x},imp{i},10.2.{i // 256 % 256}.{i % 256},"
        f"rack=r{i % 8};role=worker" for i in range(n)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=8000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bootfleet-import-"))
    # A fresh embedded database: none of the caller's BOOTFLEET_ settings.
    clean = {k: None for k in os.environ if k.startswith("BOOTFLEET_")}
    server = RunningServer(env={**clean, "BOOTFLEET_CLEANUP_EVERY": "0"}, workers=None, threads=None, timeout=90)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BOOTFLEET_")},
           "XDG_CONFIG_HOME": str(server.data / "config")}

    def bootfleet(*argv: str) -> tuple[float, subprocess.CompletedProcess]:
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "bootfleet.cli", *argv], cwd=work, env=env,
                                capture_output=True, text=True, timeout=600, check=False)
        return time.monotonic() - started, result

    try:
        rows = csv_rows(args.nodes)
        bad = rows[:-1] + [rows[-1].replace(",imp", ",Not_A_Host")]
        (work / "bad.csv").write_text("\n".join(bad) + "\n")
        (work / "fleet.csv").write_text("\n".join(rows) + "\n")
        refused_s, refused = bootfleet("node", "import", "bad.csv")
        took, done = bootfleet("node", "import", "fleet.csv")
        list_s, listed = bootfleet("node", "list", "--label", "rack=r3", "--limit", "1")
        print(f"node import: {args.nodes} nodes, {(work / 'fleet.csv').stat().st_size / 1024:.0f} KiB of CSV")
        print(f"  refused (one bad row)  {refused_s:5.2f} s  exit {refused.returncode}: {refused.stderr.strip()[:90]}")
        print(f"  imported               {took:5.2f} s  {done.stdout.strip() or done.stderr.strip()[:200]}")
        print(f"  list --label rack=r3   {list_s:5.2f} s  {listed.stdout.strip().splitlines()[-1]}")
        return 0 if done.returncode == 0 and refused.returncode == 1 else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
