"""`bootfleet serve`'s embedded PostgreSQL, watched: if it dies, serve says so and starts it again.

A thread in serve's main process (gunicorn's arbiter) checks every CHECK_SECONDS that the
postmaster whose PID pgserver started is alive. When it is gone (killed, crashed), it
prints one line saying so, starts the server again on the same data directory and
socket (the workers' database URL stays right), and prints the new PID. The workers'
pools drop their dead connections on the next request (db/connection.py), so nothing
else restarts.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from typing import Any

log = logging.getLogger(__name__)
CHECK_SECONDS = 1.0


def _say(message: str) -> None:
    print(f"bootfleet: {message}", flush=True)
    log.warning(message)


class PostgresWatch:
    """Watch one pgserver PostgresServer; restart it when its postmaster dies."""

    def __init__(self, server: Any, interval: float = CHECK_SECONDS):
        self.server = server
        self.interval = interval
        self.restarts = 0
        self._stop = threading.Event()
        self._checking = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="postgres-watch", daemon=True)

    def start(self) -> PostgresWatch:
        # Registered after pgserver's own exit handler, so it runs first: serve stopping
        # PostgreSQL on exit is not a death to restart from.
        self._pid = os.getpid()
        atexit.register(self.stop)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (waits for a check under way to finish). Nothing to do in a forked
        gunicorn worker: the watching thread lives in serve's own process only."""
        self._stop.set()
        if os.getpid() != self._pid:
            return
        with self._checking:
            pass

    def alive(self) -> bool:
        info = self.server.get_postmaster_info()
        return info is not None and info.is_running()

    def check(self) -> bool:
        """One check; True if the server was dead and has been started again."""
        with self._checking:
            if self._stop.is_set() or self.alive():
                return False
            return self._restart()

    def _restart(self) -> bool:
        old = self.server.get_postmaster_info().pid
        _say(f"the embedded PostgreSQL (pid {old}) is not running; starting it again")
        with self.server._lock:  # pgserver's own inter-process lock, as get_server takes it
            self.server.ensure_postgres_running()
        self.restarts += 1
        _say(f"the embedded PostgreSQL is running again (pid {self.server.get_pid()})")
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception as e:  # noqa: BLE001 - keep watching; say why this try failed
                _say(f"could not restart the embedded PostgreSQL: {e}; trying again in {self.interval:g} s")
                time.sleep(self.interval)


def watch(server: Any) -> PostgresWatch:
    """Start watching `server` (a pgserver PostgresServer) in a daemon thread."""
    return PostgresWatch(server).start()
