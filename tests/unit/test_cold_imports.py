"""Cold start: importing a function's module loads no cloud SDK it does not need for every request.

A Code Engine app scaled from zero pays for every import before its first answer, so the
SDKs (ibm-vpc, boto3, the DNS SDKs) are imported only where they are used: when a provider
is chosen, when a storage backend is built, when a DNS change is applied. Each import runs
in a fresh interpreter, so what an earlier test imported cannot hide an import here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ("boot", "config", "status", "dns", "cleanup")
# Top-level packages that must not be imported with a function's module: cloud SDKs, and the
# heavy libraries only some requests need.
SDKS = (
    "ibm_vpc",
    "ibm_platform_services",
    "ibm_cloud_sdk_core",
    "ibm_cloud_networking_services",
    "boto3",
    "botocore",
    "dns",  # dnspython
    "pgserver",
    "gunicorn",
    "prometheus_client",  # imported by the first flush of the metrics, a second after the first request
    "pydantic",  # imported by the handlers that parse a body with it (web/schemas.py)
    "yaml",  # imported by the cloud-init rendering that needs it (boot/render.py)
)

PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("main", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(sorted({name.partition(".")[0] for name in sys.modules})))
"""


def imported_by(source: Path) -> set[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(source)], check=False, capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("function", FUNCTIONS)
def test_importing_a_function_loads_no_cloud_sdk(function):
    loaded = imported_by(ROOT / "functions" / function / "main.py")
    assert "bootfleet" in loaded and "flask" in loaded  # the probe did import the function
    unwanted = loaded & set(SDKS)
    assert not unwanted, f"functions/{function}/main.py imports {sorted(unwanted)} at start"


def test_the_probe_sees_an_sdk_that_is_imported(tmp_path):
    """The check above can fail: a module that imports an SDK is caught."""
    source = tmp_path / "main.py"
    source.write_text("import flask\nimport ibm_vpc\n")
    assert "ibm_cloud_sdk_core" in imported_by(source)
