"""The boot storm's CPU split (bench/boot_storm.py CpuMeter) counts the processes it says it
counts: a server's whole process tree, and a PostgreSQL found by its data directory."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _storm():
    spec = importlib.util.spec_from_file_location("boot_storm", ROOT / "bench" / "boot_storm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_of_running_processes_is_split_by_part(tmp_path):
    """A server whose worker (a grandchild) burns 0.6 s of CPU and a stand-in postmaster (a program
    named postgres whose command line names the server's data directory) burning 0.4 s."""
    storm = _storm()
    data = tmp_path / "serve-data"
    ready = tmp_path / "ready"
    hold = ("import os, time, sys\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"
            "open(sys.argv[1] + '.' + str(os.getpid()), 'w').close()\ntime.sleep(30)\n")
    spawn = "import subprocess, sys; subprocess.run([sys.executable, '-c', sys.argv[1], sys.argv[2]])"
    server = subprocess.Popen([sys.executable, "-c", spawn, hold.format(seconds=0.6), str(ready)],
                              start_new_session=True)
    postgres = tmp_path / "postgres"
    postgres.symlink_to(sys.executable)
    database = subprocess.Popen([str(postgres), "-c", hold.format(seconds=0.4), str(ready), "-D", str(data)])
    meter = storm.CpuMeter(server.pid, data)
    try:
        before = meter.snapshot()
        deadline = time.monotonic() + 30
        while len(list(tmp_path.glob("ready.*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        after = meter.snapshot()
    finally:
        os.killpg(server.pid, signal.SIGKILL)  # the server and its worker
        database.kill()
        server.wait()
        database.wait()
    spent = storm.CpuMeter.per_request(before, after, 1000)  # ms per request over 1,000 requests
    # 0.6 s in the server's grandchild, 0.4 s in the database, less what each burned before `before`
    assert 0.2 <= spent["server"] <= 0.7, spent
    assert 0.1 <= spent["database"] <= 0.5, spent
