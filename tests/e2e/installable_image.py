"""An OS image for the image-install e2e (issue 22): a small bootable raw disk whose own init
reads the config the bootfleet agent handed over and reports `ready` itself.

    MBR (SYSLINUX mbr.bin), two partitions:
      1  active, FAT (type ef)   vmlinuz, initrd.img, syslinux.cfg + ldlinux.sys (BIOS);
                                 /EFI/BOOT/BOOTX64.EFI = Debian 13's ipxe.efi with autoexec.ipxe
                                 loading file:/vmlinuz and file:/initrd.img (UEFI)
      2  ext4 (type 83)          the "root": /etc/os-release, /etc/cloud/cloud.cfg.d/ (empty), made
                                 with mke2fs -d (no mount)

Its init mounts partition 2, reads `seedfrom:` from the drop-in the agent wrote
(/etc/cloud/cloud.cfg.d/90-bootfleet.cfg), fetches `<seed>user-data` with the node's token, takes
`hostname:` and `bootfleet_status:` from it, and reports ready there: what cloud-init's
NoCloud + phone_home do in a real image (docs/images.md).
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
import subprocess
from pathlib import Path

from bootfleet.agent import build as agent_build

SECTOR = 512
FAT_START, FAT_SECTORS = 2048, 48 * 2048      # 48 MiB FAT from 1 MiB
ROOT_START, ROOT_SECTORS = FAT_START + FAT_SECTORS, 8 * 2048  # 8 MiB ext4
DISK_SECTORS = ROOT_START + ROOT_SECTORS
MODULES = ("virtio_pci", "virtio_net", "ata_piix", "sd_mod")
MARKER = "bootfleet-test-os:"

INIT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /root /etc
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
say() { echo "bootfleet-test-os: $*"; }
off() { sync; poweroff -f; sleep 60; }
say "booted from the local disk: kernel $(uname -r)"
for m in $(cat /etc/modules-order); do insmod /lib/modules/$m.ko 2>/dev/null; done
n=0; while [ ! -b /dev/sda2 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
mount -t ext4 -o ro /dev/sda2 /root || { say "cannot mount /dev/sda2"; off; }
say "root: $(cat /root/etc/os-release | head -n 1)"
SEED=$(sed -n 's/^ *seedfrom: *//p' /root/etc/cloud/cloud.cfg.d/90-bootfleet.cfg 2>/dev/null)
[ -n "$SEED" ] || { say "no seedfrom: the agent handed over no config"; off; }
say "seed: $SEED"
ip link set lo up; ip link set eth0 up
udhcpc -i eth0 -s /etc/udhcpc.script -q -n -t 10 -T 1 >/dev/null 2>&1 || { say "DHCP failed"; off; }
wget -q -O /tmp/user-data "${SEED}user-data" || { say "cannot fetch user-data"; off; }
HOST=$(sed -n 's/^hostname: *//p' /tmp/user-data | head -n 1)
STATUS=$(sed -n 's/^bootfleet_status: *//p' /tmp/user-data | head -n 1)
hostname "$HOST"
if wget -q -O /tmp/answer --header "Content-Type: application/json" \
     --post-data "{\"stage\":\"ready\",\"message\":\"$HOST ready: the installed OS, from its local disk\"}" "$STATUS"; then
  say "reported ready: $(cat /tmp/answer)"
else
  say "could not report ready"
fi
off
"""

# ifopen: iPXE boots an EFI image on the last opened network device's handle (else "No such device").
AUTOEXEC = "#!ipxe\nifopen\nkernel file:/vmlinuz console=ttyS0 panic=5 initrd=initrd.img\ninitrd file:/initrd.img\nboot\n"
SYSLINUX_CFG = "PROMPT 0\nTIMEOUT 0\nDEFAULT os\nLABEL os\n  KERNEL vmlinuz\n  INITRD initrd.img\n" \
               "  APPEND console=ttyS0 panic=5\n"


def _run(*command: str, env: dict | None = None) -> None:
    subprocess.run(list(command), check=True, capture_output=True, timeout=120, env=env)


def build(cache: Path, ipxe_dir: Path) -> Path:
    """The raw disk image (built once into `cache`): needs mtools, syslinux, e2fsprogs, and the
    e2e kernel packages in cache/debs (the agent's builder downloads them)."""
    agent = agent_build.build("linux-image-cloud-amd64", cache)  # the kernel, and its modules' load order
    key = hashlib.sha256(("v2" + INIT + AUTOEXEC + SYSLINUX_CFG + agent.version).encode()).hexdigest()[:12]
    disk = cache / f"installable-{key}.img"
    if disk.exists():
        return disk
    work = cache / ".installable"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        initrd = _test_os_initrd(cache, agent)
        env = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
        fat = work / "fat.img"
        _run("mformat", "-i", str(fat), "-C", "-t", str(FAT_SECTORS // (64 * 32)), "-h", "64", "-s", "32",
             "-H", str(FAT_START), "::", env=env)
        (work / "syslinux.cfg").write_text(SYSLINUX_CFG)
        (work / "autoexec.ipxe").write_text(AUTOEXEC)
        (work / "initrd.img").write_bytes(initrd)
        shutil.copyfile(agent.kernel, work / "vmlinuz")
        _run("mmd", "-i", str(fat), "::/EFI", "::/EFI/BOOT", env=env)
        _run("mcopy", "-i", str(fat), str(Path(ipxe_dir) / "ipxe.efi"), "::/EFI/BOOT/BOOTX64.EFI", env=env)
        _run("mcopy", "-i", str(fat), str(work / "vmlinuz"), str(work / "initrd.img"), str(work / "syslinux.cfg"),
             str(work / "autoexec.ipxe"), "::/", env=env)
        rootdir = work / "root"
        (rootdir / "etc" / "cloud" / "cloud.cfg.d").mkdir(parents=True)
        (rootdir / "etc" / "os-release").write_text('PRETTY_NAME="bootfleet test OS"\n')
        root = work / "root.img"
        _run("mke2fs", "-q", "-t", "ext4", "-E", "root_owner=0:0", "-d", str(rootdir), str(root),
             f"{ROOT_SECTORS // 2}k", env=env)
        mbr = bytearray(Path("/usr/lib/syslinux/mbr/mbr.bin").read_bytes()[:440].ljust(446, b"\0"))
        mbr += struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0xEF, b"\xfe\xff\xff", FAT_START, FAT_SECTORS)
        mbr += struct.pack("<B3sB3sII", 0x00, b"\xfe\xff\xff", 0x83, b"\xfe\xff\xff", ROOT_START, ROOT_SECTORS)
        mbr += b"\0" * 32 + b"\x55\xaa"
        image = work / "disk.img"
        with open(image, "wb") as f:
            f.write(mbr)
            f.seek(FAT_START * SECTOR)
            f.write(fat.read_bytes())
            f.seek(ROOT_START * SECTOR)
            f.write(root.read_bytes())
            f.truncate(DISK_SECTORS * SECTOR)
        _run("syslinux", "--install", "--offset", str(FAT_START * SECTOR), str(image), env=env)
        image.rename(disk)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return disk


def _test_os_initrd(cache: Path, agent: agent_build.Agent) -> bytes:
    """busybox, the disk and NIC modules of the agent's kernel, and INIT."""
    debs = cache / "debs"
    busybox_deb = sorted(debs.glob("busybox-static_*.deb"))[-1]
    kernel_deb = sorted(debs.glob(f"{agent.version}_*.deb"))[-1]
    tmp = cache / ".installable" / "x"
    (tmp / "busybox").mkdir(parents=True)
    (tmp / "kernel").mkdir(parents=True)
    _run("dpkg-deb", "-x", str(busybox_deb), str(tmp / "busybox"))
    _run("dpkg-deb", "-x", str(kernel_deb), str(tmp / "kernel"))
    found = {agent_build._name(p.name.split(".ko")[0]): p
             for p in sorted((tmp / "kernel").glob("**/lib/modules/*/kernel/**/*.ko*"))}
    modules = agent_build.load_order(found, MODULES)
    return agent_build.initramfs((tmp / "busybox" / "bin" / "busybox").read_bytes(), modules, INIT)


def gz(path: Path) -> Path:
    """The image gzip-compressed beside it (once)."""
    out = path.with_suffix(".img.gz")
    if not out.exists():
        with open(path, "rb") as src, gzip.GzipFile(out, "wb", compresslevel=1, mtime=0) as dst:
            shutil.copyfileobj(src, dst)
    return out


def zst(path: Path) -> Path:
    """The image zstd-compressed beside it (once), with the zstd command (apt-get install -y zstd)."""
    out = path.with_suffix(".img.zst")
    if not out.exists():
        tmp = out.with_suffix(".zst.tmp")
        _run("zstd", "-q", "-f", "-3", "--no-progress", "-o", str(tmp), str(path))
        tmp.rename(out)
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
