"""Machines as QEMU VMs that network-boot bootfleet with Debian's iPXE.

    vm = qemu.start("node-1", "52:54:00:00:00:01", "http://10.0.2.100",
                    forwards={"10.0.2.100": 8080}, log_dir=Path(".data/vms"))
    vm.wait(120)        # exit code, or None if still running
    vm.stop()

Each VM runs Debian's `ipxe.lkrn` as its firmware, given a two-line iPXE script
(as the .lkrn's initrd) that gets an address and chains `<base_url>/boot/boot.ipxe`,
the chainloader a real machine gets as its user data. The VM's network is QEMU's
user network with `restrict=on`: it reaches nothing but the guestfwd addresses,
each piped by `busybox nc` to a port on 127.0.0.1. The serial console (the Linux
kernel's `console=ttyS0`) goes to `<log_dir>/<name>.serial.log`. `-no-reboot` makes
a reboot (Debian's 2019 iPXE has no `poweroff`) or a kernel poweroff end the VM.
A timeout kills a VM that runs too long.

`firmware="uefi"` runs OVMF (Debian's `ovmf`) instead of SeaBIOS; there the NIC's option ROM
is iPXE's EFI build (QEMU's `efi-virtio.rom`, Debian's `ipxe-qemu`), and the user network's
DHCP `bootfile` names the chainloader, as a PXE server would. `boot="disk"` boots the first
of `disks` instead of the network (the VSI iPXE disk image); `disks` are attached as IDE hard
disks in snapshot mode (never written), after the network in the boot order.

The e2e tests, `make demo` and the `local` VPC provider use this.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path

INSTALL = "apt-get install -y qemu-system-x86 ipxe busybox-static"
IPXE_LKRN = "/usr/lib/ipxe/ipxe.lkrn"
INSTALL_UEFI = "apt-get install -y ovmf ipxe-qemu"
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
EFI_NIC_ROM = "/usr/lib/ipxe/qemu/efi-virtio.rom"  # iPXE's EFI build as the virtio NIC's option ROM
# OVMF's own PXE and HTTP boot would also offer the NIC (each try costs seconds to minutes
# once iPXE exits): only iPXE's boot entry stays, so `exit` reaches the disk at once.
OVMF_NO_NETBOOT = ("IPv4PXESupport", "IPv6PXESupport", "IPv4Support", "IPv6Support")
# Where bootfleet is, as the guest sees it (QEMU's user network is 10.0.2.0/24).
GUEST_ADDRESS = "10.0.2.100"
GUEST_BASE_URL = f"http://{GUEST_ADDRESS}"


class QemuUnavailableError(RuntimeError):
    """QEMU, iPXE or busybox is missing; the message says what to install."""


class QemuError(RuntimeError):
    """A VM could not be started."""


@dataclass(frozen=True)
class Tools:
    qemu: str
    ipxe_lkrn: str
    busybox: str


def find_tools() -> Tools:
    """The binaries a VM needs, or QemuUnavailableError naming the apt-get command."""
    qemu = shutil.which("qemu-system-x86_64")
    lkrn = IPXE_LKRN if os.path.exists(IPXE_LKRN) else None
    busybox = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.access(p, os.X_OK)), None)
    missing = [what for what, found in (("qemu-system-x86_64", qemu), (IPXE_LKRN, lkrn), ("busybox", busybox))
               if not found]
    if missing:
        raise QemuUnavailableError(f"{', '.join(missing)} not found; install them with: {INSTALL}")
    return Tools(qemu, lkrn, busybox)


def check_uefi() -> None:
    """OVMF and the EFI NIC ROM are there, or QemuUnavailableError naming the apt-get command."""
    missing = [path for path in (OVMF_CODE, OVMF_VARS, EFI_NIC_ROM) if not os.path.exists(path)]
    if missing:
        raise QemuUnavailableError(f"{', '.join(missing)} not found; install them with: {INSTALL_UEFI}")


def chain_script(base_url: str, name: str) -> str:
    """What the VM's firmware runs first: get an address, chain bootfleet's chainloader."""
    return f"""#!ipxe
echo bootfleet qemu node {name}: chaining {base_url}/boot/boot.ipxe
:retry
dhcp && chain --autofree {base_url}/boot/boot.ipxe || goto wait
:wait
echo bootfleet qemu node {name}: no answer yet; retrying in 3 s
sleep 3
goto retry
"""


def _parse_forward(guest: str) -> tuple[str, int]:
    address, _, port = guest.partition(":")
    return address, int(port or 80)


def netdev(tools: Tools, forwards: dict[str, int], bootfile: str | None = None) -> str:
    """`-netdev user,restrict=on` with one guestfwd per `"10.0.2.100[:80]": host port on 127.0.0.1`
    (and the DHCP boot file name, if given)."""
    parts = ["user", "id=n0", "restrict=on"] + ([f"bootfile={bootfile}"] if bootfile else [])
    for guest, host_port in forwards.items():
        address, port = _parse_forward(guest)
        parts.append(f"guestfwd=tcp:{address}:{port}-cmd:{tools.busybox} nc 127.0.0.1 {int(host_port)}")
    return ",".join(parts)


@dataclass
class VM:
    """A running QEMU machine. Stop it with .stop(); it also ends itself after its timeout."""

    name: str
    mac: str
    uuid: str
    log_path: Path
    proc: subprocess.Popen
    started: float = field(default_factory=time.monotonic)
    timed_out: bool = False
    _timer: threading.Timer | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code (0 for a poweroff or a reboot), or None if it still runs after `timeout` s."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self._timer:
            self._timer.cancel()
        return code

    def stop(self) -> None:
        if self._timer:
            self._timer.cancel()
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()

    def log(self) -> str:
        """The serial console so far."""
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text: str, timeout: float) -> bool:
        """Wait until `text` appears on the serial console (False: it did not, or the VM ended first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            if not self.running:
                return text in self.log()
            time.sleep(0.2)
        return False

    def errors(self) -> str:
        """What QEMU itself printed (bad options, missing files)."""
        path = self.log_path.with_suffix(".qemu.log")
        return path.read_text(errors="replace") if path.exists() else ""

    def _expire(self) -> None:
        if self.running:
            self.timed_out = True
            self.proc.kill()

    def __enter__(self) -> "VM":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _machine(name: str, mac: str, base_url: str, tools: Tools, log_dir: Path, firmware: str, boot: str,
             disks: list[Path], forwards: dict[str, int], script: str | None = None,
             snapshot: bool = True) -> list[str]:
    """Firmware, boot device, disks and NIC options for one VM. `script`: what a BIOS VM's
    iPXE runs first (a server's user data); else it chains the chainloader."""
    if firmware not in ("bios", "uefi") or boot not in ("network", "disk"):
        raise QemuError(f"firmware must be bios or uefi and boot network or disk, not {firmware}/{boot}")
    if boot == "disk" and not disks:
        raise QemuError("boot='disk' needs a disk")
    args, bootfile, nic = [], None, f"virtio-net-pci,netdev=n0,mac={mac}"
    if firmware == "uefi":
        check_uefi()
        variables = log_dir / f"{name}.vars.fd"
        shutil.copyfile(OVMF_VARS, variables)
        args += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                 "-drive", f"if=pflash,format=raw,unit=1,file={_escape(variables)}"]
        for knob in OVMF_NO_NETBOOT:
            args += ["-fw_cfg", f"name=opt/org.tianocore/{knob},string=no"]
    if boot == "network" and firmware == "uefi":
        bootfile = f"{base_url}/boot/boot.ipxe"
        nic += f",romfile={EFI_NIC_ROM},bootindex=1"
    elif boot == "network":
        script_path = log_dir / f"{name}.ipxe"
        script_path.touch(mode=0o600)  # it may hold an enrolment secret
        script_path.write_text(script or chain_script(base_url, name))
        args += ["-kernel", tools.ipxe_lkrn, "-initrd", str(script_path)]
        nic += ",romfile="
    else:
        nic += ",romfile="
    for i, disk in enumerate(disks):
        fmt = "qcow2" if Path(disk).suffix == ".qcow2" else "raw"
        args += ["-drive", f"file={_escape(Path(disk).resolve())},format={fmt},if=none,id=d{i},"
                 f"snapshot={'on' if snapshot else 'off'}",
                 "-device", f"ide-hd,drive=d{i},bootindex={i + 2}"]
    return [*args, "-netdev", netdev(tools, forwards, bootfile), "-device", nic]


def _escape(path: Path) -> str:
    return str(path).replace(",", ",,")


def start(name: str, mac: str, base_url: str = GUEST_BASE_URL, forwards: dict[str, int] | None = None, *,
          log_dir: Path, uuid: str | None = None, memory_mb: int = 384, timeout: float = 600,
          accel: str = "tcg", tools: Tools | None = None, firmware: str = "bios", boot: str = "network",
          disks: list[Path] = (), script: str | None = None, snapshot: bool = True, cpus: int = 1) -> VM:
    """Boot a VM with this MAC that chains `<base_url>/boot/boot.ipxe` (or boots its first disk,
    or runs `script`, a server's user data, first).

    `forwards` maps guest addresses (`"10.0.2.100"` or `"10.0.2.101:80"`) to ports on
    127.0.0.1; the guest reaches nothing else. KVM is not assumed: `accel="tcg"`.
    `firmware` is "bios" (SeaBIOS, iPXE's .lkrn) or "uefi" (OVMF, iPXE's EFI NIC ROM);
    `boot` is "network" or "disk" (the first of `disks`). `snapshot=False`: writes to the
    disks stay (an image install writes the disk the next boot starts from). `cpus`: vCPUs
    (with TCG each is a host thread).
    """
    tools = tools or find_tools()
    if not forwards:
        raise QemuError("give at least one forward, e.g. {'10.0.2.100': 8080} for bootfleet on 127.0.0.1:8080")
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    serial = log_dir / f"{name}.serial.log"
    serial.unlink(missing_ok=True)
    vm_uuid = uuid or str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"bootfleet-qemu:{name}:{mac}"))
    command = [
        tools.qemu, "-name", name, "-machine", "pc", "-accel", accel, "-m", str(memory_mb), "-smp", str(cpus),
        "-uuid", vm_uuid, "-display", "none", "-monitor", "none", "-no-reboot", "-nodefaults", "-vga", "std",
        "-chardev", f"file,id=serial0,path={_escape(serial)}", "-serial", "chardev:serial0",
        *_machine(name, mac, base_url.rstrip("/"), tools, log_dir, firmware, boot, list(disks), forwards, script,
                 snapshot),
    ]
    qemu_log = open(serial.with_suffix(".qemu.log"), "w")
    try:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=qemu_log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    except OSError as e:
        raise QemuError(f"cannot start {tools.qemu}: {e}") from None
    finally:
        qemu_log.close()
    vm = VM(name, mac, vm_uuid, serial, proc)
    vm._timer = threading.Timer(timeout, vm._expire)
    vm._timer.daemon = True
    vm._timer.start()
    time.sleep(0.2)
    if proc.poll() is not None:
        raise QemuError(f"qemu exited at once ({proc.returncode}): {vm.errors().strip()}")
    return vm
