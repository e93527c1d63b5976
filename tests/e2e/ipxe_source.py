"""iPXE v2.0.0 built from source with a private CA embedded: what an operator whose boot
domain has a certificate from a private CA boots (docs/vpc.md, "HTTPS and iPXE").

Why a build: iPXE trusts the root fingerprints it was built with (`TRUST=`, default the iPXE
root CA, src/crypto/rootcert.c); the `trust` setting can replace them only at startup, from
non-volatile options (rootcert_init is a STARTUP_LATE function that reads it once and then
"prevents subsequent modifications", src/crypto/rootcert.c:100-121 at v2.0.0), so a script
such as the disk's autoexec.ipxe cannot add a root. `CERT=` puts the CA's certificate in the
binary too, so a server that sends only its own certificate (as Code Engine sends no root)
still gives iPXE a complete chain without fetching from http://ca.ipxe.org/auto.

HTTPS is on for the BIOS build too: v2.0.0 leaves it out of BIOS builds ("Disable protocols
not historically included in BIOS builds", src/config/general.h:62-66), so config/local/general.h
defines DOWNLOAD_PROTO_HTTPS again (read after those lines, src/config/general.h, end).

The source comes from BOOTFLEET_IPXE_GIT (a clone or bare repository), else the mirror at
/work/.mirror/ipxe+ipxe/repo, else https://github.com/ipxe/ipxe. Built once per CA into the
e2e cache (two targets, a few minutes on two cores); reused after.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

TAG = "v2.0.0"  # 2026-03-06: ECDHE, AES-GCM and ECDSA cipher suites
MIRROR = "/work/.mirror/ipxe+ipxe/repo"
UPSTREAM = "https://github.com/ipxe/ipxe"
TARGETS = ("bin-x86_64-efi/ipxe.efi", "bin/ipxe.lkrn")
LOCAL_GENERAL = "#define DOWNLOAD_PROTO_HTTPS\n"  # also in the BIOS build (ipxe.lkrn)


class IpxeBuildError(RuntimeError):
    """iPXE could not be built; the message says what failed."""


def _source(work: Path, tag: str = TAG) -> Path:
    repo = os.environ.get("BOOTFLEET_IPXE_GIT") or (MIRROR if Path(MIRROR).is_dir() else None)
    src = work / "ipxe"
    if repo:
        archive = subprocess.run(["git", "-C", repo, "archive", "--format=tar", tag], capture_output=True,
                                 timeout=300)
        if archive.returncode != 0:
            raise IpxeBuildError(f"git archive {tag} from {repo}: {archive.stderr.decode().strip()[-300:]}")
        src.mkdir(parents=True)
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True, timeout=300)
    else:
        _run(["git", "clone", "--quiet", "--depth", "1", "--branch", tag, UPSTREAM, str(src)], "git clone")
    return src


def _run(command: list[str], what: str, cwd: Path | None = None) -> None:
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=3600)
    except FileNotFoundError:
        raise IpxeBuildError(f"{command[0]} not found (apt-get install -y git gcc make perl liblzma-dev)") from None
    if result.returncode != 0:
        raise IpxeBuildError(f"{what} failed: {(result.stderr or result.stdout).strip()[-800:]}")


def ipxe_dir(cache: Path, ca_cert: Path, fingerprint: str, tag: str = TAG, targets: tuple = TARGETS) -> Path:
    """A folder holding ipxe.efi and ipxe.lkrn (`targets`) of iPXE `tag` that trust `ca_cert` (and only it)."""
    folder = cache / f"ipxe-{tag}-https-trust-{fingerprint[:16]}"
    if all((folder / Path(t).name).exists() for t in targets):
        return folder
    work = cache / f".ipxe-{tag}-build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        src = _source(work, tag)
        (src / "src" / "config" / "local" / "general.h").write_text(LOCAL_GENERAL)
        ca = work / "ca.pem"
        shutil.copyfile(ca_cert, ca)
        _run(["make", "-C", "src", f"-j{os.cpu_count() or 2}", *targets, f"CERT={ca}", f"TRUST={ca}",
              "NO_WERROR=1"], f"building iPXE {tag}", cwd=src)
        staging = cache / f".ipxe-{tag}-out"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for target in targets:
            shutil.copyfile(src / "src" / target, staging / Path(target).name)
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


if __name__ == "__main__":  # build ahead of the test: python tests/e2e/ipxe_source.py
    import sys

    sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
    from node_image import cache_dir
    from support import tls as tls_ca

    authority = tls_ca.ca(cache_dir() / "https-ca")
    tag = sys.argv[1] if len(sys.argv) > 1 else TAG
    print(ipxe_dir(cache_dir(), authority.cert, authority.fingerprint(), tag,
                   TARGETS if tag == TAG else ("bin/ipxe.lkrn",)))
