"""`bootfleet serve` as a real process, and waiting until it answers /healthz.

The one way the tests (the `server` fixture, test_cli, the dashboard, the e2e tests),
bench/boot_storm.py --start-server and `make demo` (tests/e2e/demo.py) start it.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout: float = 10, group: bool = False) -> None:
    """Ask a process to end (SIGTERM); kill it if it has not within `timeout` seconds. `group`:
    signal its whole process group (one it leads: start_new_session=True), its children too."""
    if proc.poll() is not None:
        return
    send = (lambda sig: os.killpg(proc.pid, sig)) if group else proc.send_signal
    send(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait()


_TEMP_DIRS: list[Path] = []


def _temp_dir() -> Path:
    """A temp data dir for one server, removed when this process ends (tests may still read
    a stopped server's log or VM records)."""
    if not _TEMP_DIRS:
        atexit.register(lambda: [shutil.rmtree(d, ignore_errors=True) for d in _TEMP_DIRS])
    _TEMP_DIRS.append(Path(tempfile.mkdtemp(prefix="bootfleet-serve-")))
    return _TEMP_DIRS[-1]


class RunningServer:
    """`bootfleet serve` as a real process: by default on a free port of 127.0.0.1, with
    its own data dir (BOOTFLEET_DATA_DIR) in a new temp folder.

    env: added to (a value of None: removed from) this process's environment for the server.
    workers, threads: gunicorn's; None leaves `bootfleet serve`'s own default.
    port, data: a fixed port, or data dir (e.g. the demo's .data); default: a free port, a temp dir.
    timeout: seconds to wait for /healthz (raises RuntimeError with the server's output).
    new_session: start it in its own session, so a Ctrl-C in the terminal reaches only the caller.
    demo: let serve create its demo profile (as `make run` does).
    host: serve's --host (default its own, 127.0.0.1); `url` stays on 127.0.0.1.
    """

    def __init__(self, env: dict[str, str | None] | None = None, workers: int | None = 1, threads: int | None = 8,
                 *, port: int | None = None, data: Path | str | None = None, timeout: float = 30,
                 log_name: str = "server.log", new_session: bool = False, demo: bool = False,
                 host: str | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = Path(data) if data else _temp_dir()
        self.data.mkdir(parents=True, exist_ok=True)
        # Its client settings (cli/config.py) go into the data dir, not the user's ~/.config,
        # unless the caller names an XDG_CONFIG_HOME.
        merged = {**os.environ, "BOOTFLEET_DATA_DIR": str(self.data), "XDG_CONFIG_HOME": str(self.data / "config"),
                  **(env or {})}
        self.env = {name: value for name, value in merged.items() if value is not None}
        self.log_path = self.data / log_name
        self.log = open(self.log_path, "w+")
        args = [sys.executable, "-m", "bootfleet.cli", "serve", "--port", str(self.port)]
        if host is not None:
            args += ["--host", host]
        if workers is not None:
            args += ["--workers", str(workers)]
        if threads is not None:
            args += ["--threads", str(threads)]
        self.proc = subprocess.Popen(args + ([] if demo else ["--no-demo"]), cwd=ROOT, env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=new_session)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bootfleet serve exited:\n{self.output()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or busy starting
                pass
            time.sleep(0.1)
        raise RuntimeError(f"bootfleet serve not ready after {timeout} s:\n{self.output()}")

    @property
    def admin_token(self) -> str:
        """BOOTFLEET_ADMIN_TOKEN as the server has it: from its environment, else the one it made
        and keeps in its data dir (secrets.json)."""
        if self.env.get("BOOTFLEET_ADMIN_TOKEN"):
            return self.env["BOOTFLEET_ADMIN_TOKEN"]
        return json.loads((self.data / "secrets.json").read_text())["admin_token"]

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def stop(self, timeout: float = 10) -> None:
        stop_process(self.proc, timeout)
        self.log.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class RunningFunction:
    """One function alone under functions-framework (gunicorn), as its Code Engine app runs it:
    `functions-framework --target <name>` on a free port of 127.0.0.1, this process's
    environment (the test database, settings) plus `env`."""

    def __init__(self, name: str, env: dict[str, str] | None = None, workers: int = 1, threads: int = 4,
                 timeout: float = 30):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"bootfleet-{name}-", suffix=".log")
        merged = {**os.environ, "WORKERS": str(workers), "THREADS": str(threads), **(env or {})}
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("functions-framework")), "--target", name,
             "--source", str(ROOT / "functions" / name / "main.py"), "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, env=merged, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"functions-framework {name} exited:\n{self.output()}")
            try:
                requests.get(self.url + "/metrics", timeout=1)  # any answer: it is up
                return
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"functions-framework {name} not ready after {timeout} s:\n{self.output()}")

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()

    def __enter__(self) -> RunningFunction:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
