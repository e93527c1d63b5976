"""Debian's `ipxe` package of another release, fetched with apt into the e2e cache:
iPXE 1.21.1 of Debian 13 for the VSI disk image the e2e boots, and sid's iPXE 2.0.0 for
the HTTPS e2e's ECDSA check (test_ipxe_https.py).

Debian 12 ships iPXE 1.0.0+git-20190125, whose EFI build cannot run a script from beside
itself (autoexec.ipxe arrived in iPXE 1.21.1, January 2021), so `bootfleet images
build-ipxe-disk` refuses it. The e2e therefore takes the `ipxe` package of Debian 13
("trixie", 1.21.1+git20250501) with apt itself, under a private apt configuration in the
e2e cache (its own sources list, package lists and archive folder): nothing on the machine
changes, and the machine's apt keyring verifies the download. Unpacked with dpkg-deb, once;
reused after. `ipxe_dir(cache, "sid")` does the same with Debian unstable's package (iPXE
2.0.0, whose TLS has ECDSA cipher suites; a binary package like any other: nothing is built).
On Debian 13 the system's /usr/lib/ipxe is already new enough (Ubuntu 22.04's runs the script
but cannot do TLS as Code Engine does: docs/vpc.md, "HTTPS and iPXE").
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SUITE = "trixie"


def sources(suite: str) -> str:
    return f"""Types: deb
URIs: http://deb.debian.org/debian
Suites: {suite}
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


def ipxe_dir(cache: Path, suite: str = SUITE) -> Path:
    """A folder holding the ipxe.efi and ipxe.lkrn of `suite`'s ipxe package (downloaded into
    the cache once; the .deb's version is kept beside it in `version`)."""
    folder = cache / f"ipxe-{suite}" / "usr" / "lib" / "ipxe"
    if (folder / "ipxe.efi").exists() and (folder / "ipxe.lkrn").exists():
        return folder
    package_dir(cache, "ipxe", suite, refresh=True)
    return folder


def package_dir(cache: Path, package: str, suite: str = SUITE, refresh: bool = False) -> Path:
    """`suite`'s binary package `package` unpacked (dpkg-deb -x) into cache/<package>-<suite>,
    fetched with apt under the private configuration above, once; reused after unless `refresh`.
    The cloud-init tests take Debian's cloud-init this way (tests/support/cloudinit.py)."""
    target = cache / f"{package}-{suite}"
    if target.is_dir() and not refresh:
        return target
    root = cache / f"apt-{suite}"
    for sub in ("sources", "lists/partial", "cache/archives/partial", "debs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "sources" / f"{suite}.sources").write_text(sources(suite))
    _apt(root, "update")
    for old in (root / "debs").glob(f"{package}_*.deb"):
        old.unlink()
    _apt(root, "download", package)
    deb = next((root / "debs").glob(f"{package}_*.deb"), None)
    if deb is None:
        raise IpxeUnavailableError(f"apt-get download {package} left no .deb in {root / 'debs'}")
    staging = cache / f".{package}-{suite}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True, capture_output=True, timeout=120)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    shutil.rmtree(root / "lists", ignore_errors=True)  # 20 MB of package lists, not needed again
    return target


def version(folder: Path) -> str:
    """The Debian version of the package `folder` (from ipxe_dir) came from, e.g.
    1.21.1+git20250501.dad20602+dfsg-1: its changelog's first line."""
    import gzip

    changelog = folder.parents[1] / "share" / "doc" / "ipxe" / "changelog.Debian.gz"
    first = gzip.decompress(changelog.read_bytes()).decode("utf-8", "replace").partition("\n")[0]
    return first.partition("(")[2].partition(")")[0]
