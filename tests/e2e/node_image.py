"""The kernel and initramfs the e2e nodes boot: Debian's cloud kernel and a busybox
initramfs whose /init does what an installer reports to bootfleet.

    python tests/e2e/node_image.py --out .data/images     # vmlinuz + initrd.img

`apt-get download`s linux-image-<version>-cloud-amd64 (what linux-image-cloud-amd64
points at) and busybox-static into a cache (BOOTFLEET_E2E_CACHE, default
~/.cache/bootfleet/e2e), extracts them with dpkg-deb and writes a gzipped newc cpio.
Built once per kernel version; later runs reuse the cache.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bootfleet.agent import build as agent_build
from bootfleet.agent.script import UDHCPC_SCRIPT  # the agent's DHCP hook: the same network setup

META_PACKAGE = "linux-image-cloud-amd64"
# The cloud kernel builds virtio-net as modules; insmod needs them in dependency order.
MODULES = ("virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
           "failover", "net_failover", "virtio_net")
INSTALL = "apt-get update && apt-get install -y qemu-system-x86 ipxe busybox-static"

# The node's "installer": fetch the config with the token from the kernel command line,
# apply it, report each stage to status, power off. Output goes to the serial console.
INIT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /etc
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

say() { echo "bootfleet-node: $*"; }
arg() { for word in $(cat /proc/cmdline); do case "$word" in "$1="*) echo "${word#*=}" ;; esac; done; }
halt_node() { say "powering off"; sync; poweroff -f; sleep 60; }

NODE=$(arg bootfleet.node)
CONFIG=$(arg bootfleet.config)
STATUS=$(arg bootfleet.status)
say "kernel $(uname -r) up; node $NODE"
say "cmdline: $(cat /proc/cmdline)"
if [ -z "$CONFIG" ] || [ -z "$STATUS" ]; then
  say "no bootfleet.config= or bootfleet.status= on the kernel command line"
  halt_node
fi

report() {
  if wget -q -O /tmp/answer --header "Content-Type: application/json" \
       --post-data "{\"stage\":\"$1\",\"message\":\"$2\"}" "$STATUS"; then
    say "reported $1: $(cat /tmp/answer)"
  else
    say "could not report $1"
    return 1
  fi
}
fail() { say "FAILED: $*"; report failed "$*"; halt_node; }

for module in $(cat /etc/modules-order); do
  insmod "/lib/modules/$module.ko" || { say "insmod $module failed"; halt_node; }
done
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -s /etc/udhcpc.script -q -n -t 10 -T 1 || { say "DHCP failed"; halt_node; }
say "network up: $(ip -4 -o addr show dev eth0 | awk '{print $4}')"

wget -q -O /tmp/user-data "$CONFIG" || fail "could not fetch user-data"
say "fetched user-data: $(wc -c < /tmp/user-data) bytes"
HOST=$(sed -n 's/^hostname: *//p' /tmp/user-data | head -n 1)
[ -n "$HOST" ] || fail "user-data has no hostname"
report installing "applying user-data: hostname $HOST" || halt_node
hostname "$HOST"
echo "$HOST" > /etc/hostname
report rebooting "installed $HOST; rebooting into it" || halt_node
report ready "$(hostname) ready on kernel $(uname -r)" || halt_node
say "done"
halt_node
"""


class NodeImageUnavailableError(RuntimeError):
    """The packages could not be had; the message says what to run."""


@dataclass(frozen=True)
class NodeImage:
    kernel: Path
    initrd: Path
    version: str  # the kernel package, e.g. linux-image-6.1.0-56-cloud-amd64


def cache_dir() -> Path:
    return Path(os.environ.get("BOOTFLEET_E2E_CACHE") or Path.home() / ".cache" / "bootfleet" / "e2e")


# Debian's packages fetched, unpacked and packed as the agent's build does it (the same code).
def kernel_package() -> str:
    """The versioned package linux-image-cloud-amd64 depends on now."""
    return build_step(agent_build.kernel_package, META_PACKAGE)


def build_step(step, *args, **kwargs):
    """One of the agent build's steps, its error as this module's (the e2e skips or fails on it)."""
    try:
        return step(*args, **kwargs)
    except agent_build.AgentBuildError as e:
        raise NodeImageUnavailableError(str(e)) from None


def build(cache: Path | None = None) -> NodeImage:
    """The kernel and initramfs, built into the cache if not there yet."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    package = kernel_package()
    # A change to the node's scripts builds a new initramfs (the cache is keyed by them too).
    scripts = hashlib.sha256((INIT + UDHCPC_SCRIPT + "\n".join(MODULES)).encode()).hexdigest()[:12]
    target = cache / f"{package}-{scripts}"
    image = NodeImage(target / "vmlinuz", target / "initrd.img", package)
    if image.kernel.exists() and image.initrd.exists():
        return image

    debs = cache / "debs"
    debs.mkdir(exist_ok=True)
    kernel_deb = build_step(agent_build.download, package, debs)
    busybox_deb = build_step(agent_build.download, "busybox-static", debs)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        root = Path(tmp)
        build_step(agent_build.run, ["dpkg-deb", "-x", str(kernel_deb), str(root / "kernel")])
        build_step(agent_build.run, ["dpkg-deb", "-x", str(busybox_deb), str(root / "busybox")])
        vmlinuz = next((root / "kernel" / "boot").glob("vmlinuz-*"))
        modules = {}
        for path in (root / "kernel").glob("**/lib/modules/*/kernel/**/*.ko*"):
            name = path.name.split(".ko")[0]
            if name in MODULES:
                modules[name] = path
        missing = [m for m in MODULES if m not in modules]
        if missing:
            raise NodeImageUnavailableError(f"{kernel_deb.name} has no module(s) {', '.join(missing)}")

        cpio = agent_build.Cpio()
        for directory in ("bin", "dev", "etc", "lib", "lib/modules", "proc", "run", "sys", "tmp"):
            cpio.directory(directory)
        cpio.char_device("dev/console", 5, 1)
        cpio.file("init", INIT.encode(), 0o755)
        cpio.file("bin/busybox", (root / "busybox" / "bin" / "busybox").read_bytes(), 0o755)
        cpio.file("etc/udhcpc.script", UDHCPC_SCRIPT.encode(), 0o755)
        cpio.file("etc/modules-order", ("\n".join(MODULES) + "\n").encode())
        for name in MODULES:
            cpio.file(f"lib/modules/{name}.ko", build_step(agent_build.module_bytes, modules[name]))

        staging = cache / f".{package}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        shutil.copyfile(vmlinuz, staging / "vmlinuz")
        (staging / "initrd.img").write_bytes(gzip.compress(cpio.finish(), 6))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return image


def main() -> int:
    parser = argparse.ArgumentParser(description="Build the e2e node's kernel and initramfs.")
    parser.add_argument("--out", type=Path, help="copy vmlinuz and initrd.img into this folder")
    args = parser.parse_args()
    try:
        image = build()
    except NodeImageUnavailableError as e:
        print(f"node_image: {e}", file=sys.stderr)
        return 1
    print(f"{image.version}: {image.kernel} {image.initrd}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image.kernel, args.out / "vmlinuz")
        shutil.copyfile(image.initrd, args.out / "initrd.img")
        print(f"copied to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
