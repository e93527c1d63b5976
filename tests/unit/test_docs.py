"""Docs match the code: every setting and every endpoint is documented."""

import importlib.util
import re

import pytest
from support import ROOT

from bootfleet.settings import env_names
from bootfleet.web.router import FUNCTIONS, function_source

DOCS = "\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))


def test_every_setting_read_anywhere_is_documented():
    names = set(env_names())  # every field of Settings (BOOTFLEET_<FIELD>, or the name its env= gives)
    for path in (ROOT / "lib" / "common").rglob("*.py"):
        names |= set(re.findall(r"BOOTFLEET_[A-Z0-9_]+", path.read_text()))
    names.discard("BOOTFLEET_")
    missing = sorted(n for n in names if n not in DOCS)
    assert missing == [], f"document these settings in docs/: {missing}"


def _routes():
    for name in FUNCTIONS:
        spec = importlib.util.spec_from_file_location(f"docs_check_{name}", function_source(name))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for rule in module.api.url_map.iter_rules():
            text = rule.rule
            choices = re.search(r"<any\(([^)]*)\):\w+>", text)
            variants = [text]
            if choices:
                options = [o.strip().strip("'\"") for o in choices.group(1).split(",")]
                variants = [text.replace(choices.group(0), o) for o in options]
            for variant in variants:
                yield name, f"/{name}" + re.sub(r"<(?:[^>:]+:)?([^>]+)>", "{}", variant).rstrip("/")


def _normalise(doc: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", doc)


@pytest.mark.parametrize("function,path", sorted(set(_routes())))
def test_every_endpoint_is_documented(function, path):
    assert path in _normalise(DOCS), f"document {path} in docs/"
