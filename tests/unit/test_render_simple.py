"""Templates that only print variables are rendered without jinja2 (boot/render.py, `_simple`):
the text must be exactly what jinja2's sandbox renders, for every kind, or jinja2 must render it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootfleet.boot.render import Url, _compile, _render, _render_simple, render
from bootfleet.errors import RenderError

KINDS = ("args", "ignition", "cloud-init", "none")
CONTEXT = {
    "config_url": Url("http://boot.example/config/nodes/1/user-data?token=1.ab"),
    "name": "web-0",
    "odd": 'a: b #c\n"d", [e]\u2028',
    "count": 3,
    "node": {"hostname": "web-0", "labels": {"rack": "r1", "items": "x"}, "macs": ["52:54:00:00:00:01"], "ip": ""},
    "items": "top-level names shadow nothing",
}
NAMES = ["config_url", "name", "odd", "count", "missing", "node.hostname", "node.labels.rack", "node.labels.items",
         "node.macs", "node.ip", "node.nope", "items", "none", "True"]
TEXT = st.text(alphabet=st.sampled_from(list("ab =:/?&{}#%-\n\r\t\"'[],")), max_size=12)


def jinja(source: str, kind: str) -> str:
    return _render(_compile(source, kind), dict(CONTEXT))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(TEXT, st.sampled_from(NAMES), st.sampled_from(["{{ %s }}", "{{%s}}", "{{  %s\n}}"])),
                max_size=4), TEXT, st.sampled_from(KINDS))
def test_a_simple_template_renders_as_jinja2_renders_it(pieces, tail, kind):
    source = "".join(text + form % name for text, name, form in pieces) + tail
    simple = _render_simple(source, dict(CONTEXT), kind)
    if simple is None:
        return  # jinja2's to render
    assert simple == jinja(source, kind)


@pytest.mark.parametrize("source", [
    "console=ttyS0 cfg={{ config_url }}",
    "{{ name }}{{ node.hostname }} {{ node.labels.rack }}\n",
])
@pytest.mark.parametrize("kind", KINDS)
def test_the_common_kernel_arguments_take_the_simple_path(source, kind):
    simple = _render_simple(source, dict(CONTEXT), kind)
    assert simple is not None and simple == jinja(source, kind)


@pytest.mark.parametrize("source", [
    "{{ count }}",  # not a string
    "{{ node.labels.items }}",  # a dict method's name: jinja2 prints the method
    "{{ name | upper }}", "{% if name %}x{% endif %}", "{# c #}{{ name }}", "a\r\nb {{ name }}", "{{ none }}",
    "{{ node.macs }}", "{{ missing }}",
])
def test_anything_else_goes_to_jinja2(source):
    assert _render_simple(source, dict(CONTEXT), "args") is None


def test_a_missing_name_still_fails_loudly():
    with pytest.raises(RenderError, match="missing"):
        render("x={{ missing }}", dict(CONTEXT), "args")
