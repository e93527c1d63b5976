"""`bootfleet images upload | list | rm`: put kernels and initrds where boot points iPXE;
`bootfleet images build-ipxe-disk`: the iPXE disk image a VPC virtual server boots;
`bootfleet images build-agent`: the in-memory agent that installs OS images (issue 22).

Images go straight to the storage the settings name (BOOTFLEET_STORAGE: the local
folder, or an S3 bucket); no bootfleet function ever carries their bytes.
Profiles then name them by key (`--kernel debian/vmlinuz`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from bootfleet.cli.args import Sub
from bootfleet.cli.client import CliError
from bootfleet.cli.config import server_data_dir
from bootfleet.cli.output import print_table
from bootfleet.cli.prompt import confirm
from bootfleet.errors import SettingsError
from bootfleet.providers.storage.base import Image, Storage, StorageError, check_image_key
from bootfleet.providers.storage.choose import storage_from_settings
from bootfleet.settings import Settings


def open_storage(settings: Settings) -> Storage:
    """The configured storage; locally the same folder `bootfleet serve` serves (the server's
    <data dir>/images, from any directory, unless BOOTFLEET_IMAGES_DIR names another)."""
    if settings.storage == "local" and settings.is_default("images_dir"):
        settings = replace(settings, images_dir=str(server_data_dir(settings) / "images"))
    return storage_from_settings(settings)


def upload(storage: Storage, files: list[str], key: str | None = None, prefix: str = "") -> list[Image]:
    if key and len(files) > 1:
        raise StorageError("--key names one image; give one file, or use --prefix for several")
    plan = []
    for name in files:
        path = Path(name)
        if not path.is_file():
            raise StorageError(f"{name}: no such file")
        image_key = key or f"{prefix.strip('/')}/{path.name}".lstrip("/")
        plan.append((check_image_key(image_key), path))
    return [storage.image_put(image_key, path) for image_key, path in plan]


def remove(storage: Storage, keys: list[str]) -> None:
    for key in keys:
        storage.image_delete(check_image_key(key))


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _as_dict(image: Image) -> dict:
    return {"key": image.key, "size": image.size, "modified": image.modified.isoformat()}


def cmd_images(args, settings: Settings) -> None:
    try:
        storage = open_storage(settings)
        if args.action == "rm":
            confirm(args, f"remove {', '.join(args.keys)} from {storage.where}?")
        if args.action == "upload":
            images = upload(storage, args.files, args.key, args.prefix)
        elif args.action == "list":
            images = storage.image_list(args.prefix)
        else:
            remove(storage, args.keys)
            images = []
    except (StorageError, SettingsError) as e:
        raise CliError(str(e)) from None
    except OSError as e:  # a full or read-only disk, no permission: one line too
        where = f" {e.filename}" if e.filename else ""
        raise CliError(f"images {args.action}: cannot write{where}: {e.strerror or e}") from None
    if args.json:
        print(json.dumps([_as_dict(i) for i in images], indent=2))
        return
    if args.action == "rm":
        print(f"removed {', '.join(args.keys)} from {storage.where}")
        return
    rows = [{"key": i.key, "size": _size(i.size), "modified": i.modified.strftime("%Y-%m-%d %H:%M:%S")}
            for i in images]
    print_table(rows, ["key", "size", "modified"])
    if args.action == "upload":
        print(f"uploaded to {storage.where}")


def cmd_build_ipxe_disk(args, settings: Settings) -> None:
    """Build the VSI iPXE disk image (bootfleet.boot.ipxe_disk), saying what it does as it goes."""
    from bootfleet.boot import ipxe_disk  # only this command needs it

    def progress(line: str) -> None:
        print(f"build-ipxe-disk: {line}", flush=True)

    boot_url = getattr(args, "url", None)
    if not boot_url:
        raise CliError("build-ipxe-disk needs --url, the boot domain the image chains, e.g. --url https://boot.example.com")
    try:
        out = ipxe_disk.build(boot_url, args.out, ipxe_dir=args.ipxe_dir, size_mib=args.size,
                              fmt=args.format, trust_ca=args.trust_ca, crosscert=args.crosscert, progress=progress)
    except ipxe_disk.DiskImageError as e:
        raise SystemExit(f"bootfleet: {e}") from None
    print(f"wrote {out} ({_size(out.stat().st_size)}); upload it to COS and import it as a VPC image (docs/vpc.md)")


def cmd_build_agent(args, settings: Settings) -> None:
    """Issue 22: build the bootfleet agent (bootfleet.agent.build), copy it to --out, and upload it
    to the image storage under --prefix (like any boot image) unless --no-upload."""
    import shutil

    from bootfleet.agent import build as agent_build  # only this command needs it

    def progress(line: str) -> None:
        print(f"build-agent: {line}", flush=True)

    try:
        agent = agent_build.build(args.kernel_package, Path(args.cache) if args.cache else None, progress=progress)
    except agent_build.AgentBuildError as e:
        raise CliError(str(e)) from None
    progress(f"{agent.version}: {agent.kernel} ({_size(agent.kernel.stat().st_size)}),"
             f" {agent.initrd} ({_size(agent.initrd.stat().st_size)})")
    files = [agent.kernel, agent.initrd]
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copyfile(path, out / path.name)
        progress(f"copied to {out}")
    if not args.no_upload:
        try:
            images = upload(open_storage(settings), [str(f) for f in files], prefix=args.prefix)
        except (StorageError, SettingsError) as e:
            raise CliError(str(e)) from None
        progress(f"uploaded {', '.join(i.key for i in images)}")
        print(f"an image profile boots it with kernel {images[0].key}, initrds [{images[1].key}] (docs/images.md)")


def add_images_parser(sub) -> None:
    p = sub.add("images", "upload, list and remove boot images (kernels, initrds)")
    actions = Sub(p, "action", "ACTION")
    a = actions.add("upload", "upload files; each is stored under its file name (or --key)")
    a.add_argument("files", nargs="+", metavar="FILE")
    a.add_argument("--key", help="the key to store one file under, e.g. debian/vmlinuz")
    a.add_argument("--prefix", default="", help="a folder to put the files in, e.g. debian/12")
    a = actions.add("list", "list images")
    a.add_argument("--prefix", default="", help="only keys starting with this")
    a = actions.add("rm", "remove images")
    a.add_argument("keys", nargs="+", metavar="KEY")
    p.set_defaults(func=cmd_images)
    # --url (the global option) is the boot domain the image's chainloader asks: required here.
    a = actions.add("build-ipxe-disk", "build the iPXE disk image VPC virtual servers boot (docs/vpc.md);"
                    " --url https://boot.example.com names the domain it chains")
    a.add_argument("--out", default="bootfleet-ipxe.qcow2", help="the image file to write (default %(default)s)")
    a.add_argument("--format", choices=["qcow2", "raw"], default="qcow2")
    a.add_argument("--size", type=int, default=1024, help="virtual disk size in MiB (default %(default)s)")
    a.add_argument("--ipxe-dir", default="/usr/lib/ipxe",
                   help="folder with ipxe.efi and ipxe.lkrn: for an https --url, Debian 13's iPXE or iPXE v2.0.0"
                   " (default %(default)s)")
    a.add_argument("--trust-ca", metavar="FILE",
                   help="a private CA's certificate (PEM) that signed the domain's: check that the iPXE in --ipxe-dir "
                   "was built to trust it (TRUST=FILE: https://ipxe.org/crypto; docs/vpc.md)")
    a.add_argument("--crosscert", metavar="URL",
                   help="where the disk's iPXE fetches cross-signed root certificates instead of http://ca.ipxe.org/auto")
    a.set_defaults(func=cmd_build_ipxe_disk)
    a = actions.add("build-agent", "build the bootfleet agent (kernel + initramfs from Debian packages) that"
                    " reports inventory and writes OS images, and upload it (docs/images.md)")
    a.add_argument("--kernel-package", default="linux-image-amd64",
                   help="the Debian kernel: linux-image-amd64 (every driver, default) or linux-image-cloud-amd64"
                   " (smaller: virtio and cloud NICs)")
    a.add_argument("--prefix", default="bootfleet-agent", help="the storage folder (default %(default)s)")
    a.add_argument("--out", help="also copy vmlinuz and initrd.img into this folder")
    a.add_argument("--cache", help="where packages and builds are kept (default ~/.cache/bootfleet/agent)")
    a.add_argument("--no-upload", action="store_true", help="build only")
    a.set_defaults(func=cmd_build_agent)

