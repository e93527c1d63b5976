"""The boot step's SQL function (migrations/0016_boot_step.sql) names stages in its own lists;
they must stay stages.py's, or boot would open installs where the rest of bootfleet does not."""

from __future__ import annotations

import re
from importlib import resources

from bootfleet import stages


def _list(name: str) -> tuple[str, ...]:
    sql = (resources.files("bootfleet.db") / "migrations" / "0016_boot_step.sql").read_text()
    match = re.search(rf"\b{name} constant text\[\] := ARRAY\[(.*?)\];", sql, re.S)
    assert match, f"no {name} list in 0016_boot_step.sql"
    return tuple(re.findall(r"'([a-z]+)'", match.group(1)))


def test_the_install_path_is_stages_forward():
    assert _list("forward") == stages.FORWARD


def test_the_stages_that_open_an_install_are_stages_opens_install():
    assert _list("opens_install") == stages.OPENS_INSTALL


def test_the_stages_that_install_nothing_are_local_boot_and_terminal():
    assert _list("no_install") == stages.LOCAL_BOOT + stages.TERMINAL
