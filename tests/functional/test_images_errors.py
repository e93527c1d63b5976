"""`bootfleet images` on a disk that cannot take the file: one line saying so, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

from support import ROOT

# The file-size limit makes every write past 4 KiB fail as a full disk does (EFBIG; Python
# ignores SIGXFSZ); a parent that is a file makes the folder impossible to create.
FULL = ("import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096));"
        " sys.argv = ['bootfleet'] + sys.argv[1:]; runpy.run_module('bootfleet.cli', run_name='__main__')")


def _images(tmp_path, *args, full=False, images_dir=None):
    env_dir = str(images_dir or tmp_path / "store")
    command = [sys.executable, "-c", FULL, *args] if full else [sys.executable, "-m", "bootfleet.cli", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "BOOTFLEET_IMAGES_DIR": env_dir, "BOOTFLEET_STORAGE": "local"})


def test_a_full_disk_is_one_line(tmp_path):
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"k" * 100_000)
    result = _images(tmp_path, "images", "upload", str(kernel), full=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ["bootfleet: images upload: cannot write: File too large"]
    assert [p.name for p in (tmp_path / "store").iterdir()] == []  # no half-written file left


def test_a_folder_that_cannot_be_made_is_one_line(tmp_path):
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"k")
    (tmp_path / "afile").write_text("x")
    result = _images(tmp_path, "images", "upload", str(kernel), images_dir=tmp_path / "afile" / "store")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("bootfleet: images upload: cannot write") and "Not a directory" in line
