"""The `local` provider: a deployment's servers are QEMU VMs on this machine.

The demo goes through the same provisioning path as the cloud (bootfleet.provision), with
this `Provider` in place of IBM's. Each VM is started by qemu.py beside it (Debian's
iPXE as firmware, QEMU's restricted user network) and chains bootfleet's
chainloader at `http://10.0.2.100/boot/boot.ipxe`, forwarded to bootfleet's port on
127.0.0.1. A VM's record (`<data dir>/vms/<name>.json`: id, MAC, pid, deployment) is
the provider's "API": any process (another gunicorn worker, the CLI) sees the same
servers, and the ownership tag is the record's `deployment`.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import signal
import subprocess
import threading
import uuid as uuidlib
from pathlib import Path
from urllib.parse import urlparse

from bootfleet.errors import SettingsError
from bootfleet.providers.vpc import qemu
from bootfleet.providers.vpc.base import Provider, Server, ServerSpec
from bootfleet.settings import Settings, get_settings

VM_TIMEOUT = 12 * 3600  # a demo VM is killed after this many seconds


def vm_dir(settings: Settings) -> Path:
    return Path(settings.data_dir).resolve() / "vms"


def mac_for(name: str) -> str:
    """A stable, locally administered MAC for a VM name (52:54:00 is QEMU's prefix)."""
    digest = hashlib.sha256(name.encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


# The VMs this process started, by pid: a VM that has ended is waited for (reaped) on the next
# provider call here, so no QEMU lingers as a zombie of a long-lived server process.
_children: dict[int, qemu.VM] = {}
_children_lock = threading.Lock()


def _reap() -> None:
    with _children_lock:
        for pid, vm in list(_children.items()):
            if vm.proc.poll() is not None:
                del _children[pid]


def _stopped(pid: int, timeout: float = 10) -> None:
    """Wait for a VM of this process's that was told to stop, so it leaves no zombie."""
    with _children_lock:
        vm = _children.pop(pid, None)
    if vm is None:
        return  # another process's (another worker started it): that one reaps it
    try:
        vm.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        vm.proc.kill()
        vm.proc.wait()


def _alive(pid: int, vm_uuid: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if vm_uuid.encode() not in cmdline:
        return False  # the pid was reused by something else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


class LocalProvider(Provider):
    """VMs on this machine, one per node."""

    name = "local"
    enrols = True  # each VM runs the user data it was created with

    def __init__(self, directory: Path, memory_mb: int = 384, tools: qemu.Tools | None = None):
        self.dir = directory
        self.memory_mb = memory_mb
        self.tools = tools

    @classmethod
    def from_settings(cls, placement: dict, settings: Settings | None = None) -> "LocalProvider":
        try:
            tools = qemu.find_tools()
        except qemu.QemuUnavailableError as e:
            raise SettingsError(f"the local provider needs QEMU: {e}") from None
        return cls(vm_dir(settings or get_settings()), int(placement.get("memory", 384)), tools)

    # --- records ----------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def _records(self) -> list[dict]:
        _reap()
        if not self.dir.exists():
            return []
        records = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                records.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return records

    def _write(self, record: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self._path(record["name"]).with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(self._path(record["name"]))

    def _server(self, record: dict) -> Server:
        running = _alive(record["pid"], record["uuid"])
        return Server(id=record["id"], name=record["name"], status="running" if running else "stopped",
                      crn=None, mac=record["mac"], ip=None,
                      created_at=datetime.datetime.fromisoformat(record["created_at"]))

    def _by_id(self, server_id: str) -> dict | None:
        return next((r for r in self._records() if r["id"] == server_id), None)

    # --- the provider interface -----------------------------------------------------------

    def boot_url(self, base_url: str) -> str:
        return qemu.GUEST_BASE_URL  # forwarded to base_url's port on 127.0.0.1

    def _start(self, record: dict, base_url: str, user_data: str | None = None) -> None:
        port = urlparse(base_url).port or (443 if base_url.startswith("https") else 80)
        vm = qemu.start(record["name"], record["mac"], qemu.GUEST_BASE_URL, {qemu.GUEST_ADDRESS: port},
                        log_dir=self.dir, uuid=record["uuid"], memory_mb=self.memory_mb, timeout=VM_TIMEOUT,
                        tools=self.tools, script=user_data)
        record.update(pid=vm.pid, base_url=base_url)
        with _children_lock:
            _children[vm.pid] = vm

    def create(self, spec: ServerSpec) -> Server:
        existing = self.find(spec.name)
        if existing is not None:
            return existing
        vm_uuid = str(uuidlib.uuid4())
        record = {"id": f"qemu-{vm_uuid}", "name": spec.name, "uuid": vm_uuid, "mac": mac_for(spec.name),
                  "deployment": None, "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        try:
            # The VM's firmware runs the user data (the chainloader with its enrolment secret),
            # as an IBM bare metal server's iPXE does.
            self._start(record, spec.base_url or qemu.GUEST_BASE_URL, spec.user_data or None)
        except qemu.QemuError as e:
            from bootfleet.providers.vpc.base import VpcError

            raise VpcError(f"start VM {spec.name}", 500, "qemu_failed", str(e)) from None
        self._write(record)
        return self._server(record)

    def get(self, server_id: str) -> Server | None:
        record = self._by_id(server_id)
        return self._server(record) if record else None

    def find(self, name: str) -> Server | None:
        path = self._path(name)
        if not path.exists():
            return None
        return self._server(json.loads(path.read_text()))

    def list_owned(self, deployment: str, known: frozenset[str] = frozenset()) -> list[Server]:
        return [self._server(r) for r in self._records() if r.get("deployment") == deployment]

    def is_owned(self, server: Server, deployment: str) -> bool:
        record = self._by_id(server.id)
        return bool(record) and record.get("deployment") == deployment

    def claim(self, server: Server, deployment: str) -> None:
        record = self._by_id(server.id)
        if record:
            record["deployment"] = deployment
            self._write(record)

    def _kill(self, record: dict) -> None:
        if _alive(record["pid"], record["uuid"]):
            try:
                os.killpg(record["pid"], signal.SIGTERM)  # qemu runs in its own session
            except ProcessLookupError:
                pass
        _stopped(record["pid"])

    def delete(self, server_id: str) -> bool:
        """Stop the VM and remove what it left here: its record, its serial and QEMU logs, the
        script it ran (`<name>.*`; `web-1.*` is not `web-10`'s)."""
        record = self._by_id(server_id)
        if record is None:
            return False
        self._kill(record)
        self._path(record["name"]).unlink(missing_ok=True)
        for leftover in self.dir.glob(f"{record['name']}.*"):
            leftover.unlink(missing_ok=True)
        return True

    def reboot(self, server_id: str) -> None:
        self._restart(server_id, None)

    def reinstall(self, server_id: str, user_data: str, wait: float = 0) -> str:
        """Restart the VM with its new user data (a new enrolment secret)."""
        self._restart(server_id, user_data)
        return "restarted"

    def _restart(self, server_id: str, user_data: str | None) -> None:
        """Stop the VM and start it again with `user_data`, or (None) the script it ran, kept
        beside its record."""
        record = self._by_id(server_id)
        if record is None:
            raise SettingsError(f"no local VM {server_id}")
        if user_data is None:
            script = self.dir / f"{record['name']}.ipxe"
            user_data = script.read_text() if script.exists() else None
        self._kill(record)
        self._start(record, record.get("base_url") or qemu.GUEST_BASE_URL, user_data)
        self._write(record)
