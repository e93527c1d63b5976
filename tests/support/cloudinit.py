"""Debian's cloud-init package, its Python code importable by the tests.

The reporter test (tests/functional/test_installer_reports.py) posts through cloud-init's own
webhook reporter (`cloudinit/reporting/handlers.py` WebHookHandler, the code a node runs when
its cloud-config has a `reporting:` entry of type webhook), and the example profiles are
checked with cloud-init's own schema module (`cloudinit/config/schema.py`). The package is
Debian 13's `cloud-init` (architecture all, pure Python), fetched with apt and unpacked as
the e2e takes iPXE (tests/e2e/ipxe_debian13.py), once, into the e2e cache.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("BOOTFLEET_E2E_CACHE") or Path.home() / ".cache" / "bootfleet" / "e2e")


def load() -> Path:
    """The unpacked package's dist-packages folder, put on sys.path; skips the test when apt
    cannot fetch the package (no Debian tools or no network)."""
    from e2e import ipxe_debian13

    try:
        root = ipxe_debian13.package_dir(CACHE, "cloud-init")
    except ipxe_debian13.IpxeUnavailableError as e:
        pytest.skip(f"Debian's cloud-init package: {e}")
    folder = root / "usr" / "lib" / "python3" / "dist-packages"
    if str(folder) not in sys.path:
        sys.path.append(str(folder))
    return folder


def version() -> str:
    """The cloud-init version the package holds (cloudinit/version.py)."""
    load()
    from cloudinit import version as v

    return v.version_string()
