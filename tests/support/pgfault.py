"""A PostgreSQL of a test's own, to kill and start again (fault tests).

The suite's shared server (tests/conftest.py) is never touched: each FaultyPostgres has its
own data directory, is killed only by the PID of its own postmaster, and is deleted at the end.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import psutil


class FaultyPostgres:
    def __init__(self):
        import pgserver

        os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="bootfleet-run-"))
        self.data = Path(tempfile.mkdtemp(prefix="bootfleet-fault-pg-")) / "pg"
        self.server = pgserver.get_server(self.data, cleanup_mode="delete")
        self.url = self.server.get_uri("postgres")

    @property
    def pid(self) -> int:
        return self.server.get_pid()

    def kill(self) -> int:
        """SIGKILL the postmaster (by its PID) and wait until its backends are gone too."""
        pid = self.pid
        postmaster = psutil.Process(pid)
        children = postmaster.children(recursive=True)
        os.kill(pid, signal.SIGKILL)
        psutil.wait_procs([postmaster, *children], timeout=15)
        return pid

    def start(self) -> None:
        with self.server._lock:  # pgserver's lock, as it takes it itself
            self.server.ensure_postgres_running()

    def restart(self) -> None:
        self.kill()
        self.start()

    def wait_for(self, check, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError("PostgreSQL did not come back")
            time.sleep(0.1)

    def stop(self) -> None:
        self.server.cleanup()
