"""The Makefile's two commands (issue 25): `make run` installs what running needs (`.[local]`),
not the test tools; `make test` installs `.[local,test]`. Read from `make -n` (what make would
run) for a virtualenv that does not exist yet, so nothing is installed here."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from support import ROOT


def planned(target: str, tmp_path) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not on this machine")
    result = subprocess.run(["make", "-n", target, f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=True)
    return result.stdout


def test_make_run_installs_the_local_extra_only(tmp_path):
    plan = planned("run", tmp_path)
    assert "pip install --quiet -e '.[local]'" in plan
    assert "test]" not in plan and "serve --port" in plan


def test_make_test_installs_the_test_tools(tmp_path):
    plan = planned("test", tmp_path)
    assert "pip install --quiet -e '.[local,test]'" in plan and "-m pytest" in plan
