"""What the infra tests share: real processes (nginx, the container's entrypoint) on
127.0.0.1 free ports, a certificate made with openssl, and waiting for a port.

Nothing here fakes nginx or our code: each helper starts the real program.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests
from support.server import stop_process

ROOT = Path(__file__).resolve().parents[2]
RENDER = ROOT / "infra" / "nginx" / "render.py"
ENTRYPOINT = ROOT / "infra" / "container" / "entrypoint.sh"
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need(program: str, package: str) -> str:
    """The program's path, or skip saying exactly what to install (.ci/run installs it)."""
    path = shutil.which(program) or next(
        (p for p in (f"/usr/sbin/{program}", f"/usr/bin/{program}") if os.access(p, os.X_OK)), None
    )
    if not path:
        pytest.skip(f"{program} is not installed: apt-get install {package}")
    return path


def world_readable_tmpdir(prefix: str) -> Path:
    """A temp folder nginx's worker processes (nobody, when the tests run as root) can read."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made with openssl."""
    openssl = need("openssl", "openssl")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def render(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RENDER), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def worker_user() -> list[str]:
    """As root (CI), nginx's workers would drop to nobody, who may not reach a checkout in
    a private folder; these test-only servers on 127.0.0.1 keep root's access."""
    return ["--user", "root"] if os.geteuid() == 0 else []


def wait_for_port(port: int, proc: subprocess.Popen, output, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before listening on {port}:\n{output()}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port} after {timeout} s:\n{output()}")


class Process:
    """A real program on a port, with its output kept in a file for failure messages."""

    def __init__(self, argv: list[str], port: int, env: dict | None = None, cwd: Path = ROOT, wait: bool = True):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = Path(tempfile.mkstemp(prefix="bootfleet-proc-", suffix=".log")[1])
        self.log = open(self.log_path, "w+")
        self.proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})}, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            try:
                wait_for_port(port, self.proc, self.output)
            except RuntimeError:
                self.stop()
                raise

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        stop_process(self.proc, group=True)
        self.log.close()


def entrypoint(target: str, port: int, env: dict | None = None, wait: bool = True) -> Process:
    """The container's entrypoint, run here as the image runs it (FUNCTION_TARGET, PORT)."""
    return Process(
        ["/bin/sh", str(ENTRYPOINT)], port, wait=wait,
        env={"PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}:/usr/sbin:/sbin",
             "BOOTFLEET_ROOT": str(ROOT), "FUNCTION_TARGET": target, "PORT": str(port), "HOST": "127.0.0.1",
             **(env or {})},
    )


def start_nginx(conf: Path, runtime: Path, port: int) -> Process:
    nginx = need("nginx", "nginx")
    return Process([nginx, "-e", "stderr", "-p", str(runtime), "-c", str(conf), "-g", "daemon off;"], port)


def wait_http(url: str, timeout: float = 30, **kwargs) -> requests.Response:
    """The first answer at `url` within `timeout` seconds: a server still starting refuses the
    connection, or (its first request opens the database and imports the rest) answers slowly."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return requests.get(url, timeout=max(1.0, min(15.0, deadline - time.monotonic())), **kwargs)
        except (requests.ConnectionError, requests.Timeout):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class SilentUpstream:
    """Accepts connections and never answers: a function stuck on something."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()
