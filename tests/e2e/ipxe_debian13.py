"""iPXE 1.21.1 (Debian 13's `ipxe` package) for the VSI disk image the e2e boots.

Debian 12 ships iPXE 1.0.0+git-20190125, whose EFI build cannot run a script from beside
itself (autoexec.ipxe arrived in iPXE 1.21.1, January 2021), so `bootfleet images
build-ipxe-disk` refuses it. The e2e therefore takes the `ipxe` package of Debian 13
("trixie") with apt itself, under a private apt configuration in the e2e cache (its own
sources list, package lists and archive folder): nothing on the machine changes, and the
machine's apt keyring verifies the download. Unpacked with dpkg-deb, once; reused after.
On Debian 13 the system's /usr/lib/ipxe is already new enough (Ubuntu 22.04's runs the script
but cannot do TLS as Code Engine does: docs/vpc.md, "HTTPS and iPXE").
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SUITE = "trixie"
SOURCES = f"""Types: deb
URIs: http://deb.debian.org/debian
Suites: {SUITE}
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


class IpxeUnavailableError(RuntimeError):
    """apt could not fetch the package; the message says what failed."""


def _apt(root: Path, *args: str) -> None:
    options = [
        "-o", "Dir::Etc::SourceList=/dev/null", "-o", f"Dir::Etc::SourceParts={root / 'sources'}",
        "-o", f"Dir::State::Lists={root / 'lists'}", "-o", f"Dir::Cache={root / 'cache'}",
        "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=",
        "-o", "Acquire::Languages=none", "-o", "APT::Architectures=amd64", "-o", "APT::Sandbox::User=root",
    ]
    try:
        result = subprocess.run(["apt-get", *options, *args], cwd=root / "debs", capture_output=True, text=True,
                                timeout=600)
    except FileNotFoundError:
        raise IpxeUnavailableError("apt-get not found: the e2e takes iPXE from Debian's packages") from None
    if result.returncode != 0:
        raise IpxeUnavailableError(f"apt-get {' '.join(args)} failed: {result.stderr.strip()[-400:]}")


def ipxe_dir(cache: Path) -> Path:
    """A folder holding Debian 13's ipxe.efi and ipxe.lkrn (downloaded into the cache once)."""
    target = cache / f"ipxe-{SUITE}"
    folder = target / "usr" / "lib" / "ipxe"
    if (folder / "ipxe.efi").exists() and (folder / "ipxe.lkrn").exists():
        return folder
    root = cache / f"apt-{SUITE}"
    for sub in ("sources", "lists/partial", "cache/archives/partial", "debs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "sources" / f"{SUITE}.sources").write_text(SOURCES)
    _apt(root, "update")
    for old in (root / "debs").glob("ipxe_*.deb"):
        old.unlink()
    _apt(root, "download", "ipxe")
    deb = next((root / "debs").glob("ipxe_*.deb"), None)
    if deb is None:
        raise IpxeUnavailableError(f"apt-get download ipxe left no .deb in {root / 'debs'}")
    staging = cache / f".ipxe-{SUITE}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True, capture_output=True, timeout=120)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    shutil.rmtree(root / "lists", ignore_errors=True)  # 20 MB of package lists, not needed again
    return folder
