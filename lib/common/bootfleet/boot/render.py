"""Templates: kernel arguments and each node's Ignition or cloud-init.

jinja2 in a sandbox with limits (boot/sandbox.py) and StrictUndefined: a template that
names a variable the node does not have fails loudly instead of rendering an empty string.

A value printed into a config cannot add a line or change its structure:
- Ignition (JSON): every printed value is escaped as the inside of a JSON string, so
  `"{{ node.hostname }}"` is one JSON string whatever the value holds; `| tojson`
  prints a whole JSON value, as it is.
- cloud-init: a printed string that YAML would not read back as the same string on one
  line, in a block or a flow collection (a line break, `: `, ` #`, a leading `-`, `,`,
  `[`, `{`, `"`, `true`, `1e3`, ...) is printed
  as a JSON string, which YAML reads as that string; `| tojson` likewise. A rendered
  `#cloud-config` must be valid YAML, a rendered Ignition valid JSON.
Kernel arguments are checked after rendering against what iPXE would interpret
(validation.check_safe_text).

A template that only prints variables (`console=ttyS0 cfg={{ config_url }}`, most kernel
arguments) is rendered without jinja2 (`_simple`): the same text, each `{{ name.field }}`
replaced by what jinja2 would print for a string there, finalized the same way. Anything
else (a filter, a tag, a value that is not a string, a name the node lacks) goes to jinja2,
which prints it or says what is wrong. A boot storm's node scripts, and a function's first
answer, then never compile a template.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bootfleet.errors import RenderError, ValidationError

if TYPE_CHECKING:  # jinja2's sandbox is imported by the first template that is not simple (_simple)
    import jinja2

_LINE_BREAKS = ("\n", "\r", "\x85", "\u2028", "\u2029")
_FLOW = frozenset(",[]{}")


class Json(str):
    """Text that is already a whole JSON value (the output of `tojson`): printed as it is."""


class Url(str):
    """A URL bootfleet made (base_url, config_url, status_url...): printed plain wherever YAML
    reads it back after a key, so `url: {{ status_url }}&stage=ready` stays one value. PyYAML
    ends a plain scalar at `?` in a flow collection: quote a URL there (`["{{ status_url }}"]`)."""


def _tojson(value: Any) -> Json:
    try:
        return Json(json_text(value))
    except (TypeError, ValueError) as e:
        import jinja2

        raise jinja2.TemplateRuntimeError(f"tojson: {e}") from None


@functools.lru_cache(maxsize=4096)
def _plain_yaml(text: str, flow: bool = True) -> bool:
    """Whether `text` printed after `key: `, and (`flow`) in a flow collection (`[a, {{ v }}]`,
    `{k: {{ v }}}`), reads back as the same string, on one line. A flow indicator (`,[]{}`) ends
    a plain scalar there, and PyYAML reads a `?` or a leading `:` there as a mapping's, so a
    string holding one is printed quoted."""
    if not text or any(c in text for c in _LINE_BREAKS) or not text.isprintable() or text != text.strip():
        return False
    if flow and any(c in _FLOW for c in text):
        return False
    import yaml  # here, not at import: a node script renders no YAML (16 ms of every cold start)

    try:
        return yaml.safe_load(f"k: {text}\n") == {"k": text} and (
            not flow or yaml.safe_load(f"[{text}]\n") == [text] and yaml.safe_load(f"{{k: {text}}}\n") == {"k": text})
    except yaml.YAMLError:
        return False


def _finalize_ignition(value: Any) -> str:
    if isinstance(value, Json):
        return value
    return json.dumps(value if isinstance(value, str) else str(value))[1:-1]


def _yaml_printable(char: str) -> bool:
    """YAML 1.1's printable set (what a YAML stream may hold unescaped), less its line breaks."""
    code = ord(char)
    return (0x20 <= code <= 0x7E or 0xA0 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or code >= 0x10000) \
        and char not in _LINE_BREAKS


def json_text(value: Any) -> str:
    """`value` as JSON on one line that YAML reads as the same value too: JSON's escapes (which
    YAML's double-quoted scalars share) for what JSON escapes, \\uXXXX for the rest of what YAML
    may not hold or would read as a line break, and characters beyond U+FFFF as they are
    (PyYAML, which cloud-init uses, reads an escaped surrogate pair as two characters)."""
    return "".join(c if _yaml_printable(c) or c in '\\"' else f"\\u{ord(c):04x}"
                   for c in json.dumps(value, ensure_ascii=False, allow_nan=False))


def _finalize_cloud_init(value: Any) -> Any:
    if isinstance(value, Json) or not isinstance(value, str) or _plain_yaml(value, flow=not isinstance(value, Url)):
        return value
    return json_text(value)


_FINALIZE: dict[str, Callable[[Any], Any] | None] = {
    "args": None, "ignition": _finalize_ignition, "cloud-init": _finalize_cloud_init, "none": None}


@functools.lru_cache(maxsize=None)
def _environment(kind: str) -> Any:
    import jinja2

    from bootfleet.boot.sandbox import LimitedSandbox

    env = LimitedSandbox(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True,
                         finalize=_FINALIZE[kind])
    env.filters["tojson"] = _tojson
    return env


@functools.lru_cache(maxsize=256)
def _compile(source: str, kind: str = "args") -> jinja2.Template:
    from bootfleet.boot.sandbox import has_loops

    template = _environment(kind).from_string(source)
    template.bootfleet_loops = has_loops(_environment(kind), source)
    return template


def _render(template: jinja2.Template, context: dict) -> str:
    from bootfleet.boot.sandbox import render_limited

    return render_limited(template, context, loops=template.bootfleet_loops)


# `{{ name }}` or `{{ name.field.field }}`, ASCII names: what _simple renders itself.
_PRINT = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*\}\}")
# What else would start jinja2 syntax in the text between them; jinja2 also reads \r\n as \n.
_SYNTAX = ("{{", "{%", "{#", "\r")
_LITERALS = frozenset({"true", "false", "none", "True", "False", "None"})  # jinja2's, not variables


@functools.lru_cache(maxsize=256)
def _simple(source: str) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]] | None:
    """(texts, variable paths) of a template that only prints variables, texts[i] before
    paths[i]; None for any other template (jinja2 renders it)."""
    parts = _PRINT.split(source)
    texts, paths = tuple(parts[0::2]), tuple(tuple(p.split(".")) for p in parts[1::2])
    if (any(marker in text for text in texts for marker in _SYNTAX) or any(p[0] in _LITERALS for p in paths)
            or any(text.endswith("{") for text in texts[:-1])):  # `{{{ a }}`: jinja2 reads `{{` then `{ a }}`
        return None
    return texts, paths


def _render_simple(source: str, context: dict, kind: str) -> str | None:
    """What jinja2 would render for a simple template (_simple), or None when jinja2 must
    render it: a name the context lacks, a value that is not a string, a field that is also a
    dict method (jinja2 would print the method), an output over the sandbox's limit."""
    simple = _simple(source)
    if simple is None:
        return None
    texts, paths = simple
    finalize = _FINALIZE[kind]
    out = [texts[0]]
    for path, text in zip(paths, texts[1:]):
        value: Any = context
        for depth, name in enumerate(path):
            if not isinstance(value, dict) or name not in value or (depth and hasattr(dict, name)):
                return None
            value = value[name]
        if not isinstance(value, str):
            return None
        out.append(str(finalize(value) if finalize else value))
        out.append(text)
    rendered = "".join(out)
    return rendered if len(rendered) <= 4 * 1024 * 1024 else None  # sandbox.MAX_OUTPUT: jinja2 says so


def check_template(source: str, field: str, kind: str = "args") -> str:
    """Raise ValidationError if `source` is not a valid template, or if trying it on a
    sample node goes past a limit (boot/sandbox.py)."""
    import jinja2

    from bootfleet.boot.sandbox import TemplateLimitError

    try:
        template = _compile(source, kind)
    except jinja2.TemplateSyntaxError as e:
        raise ValidationError(field, f"template syntax error on line {e.lineno}: {e.message}") from None
    except RecursionError:
        raise ValidationError(field, "the template is nested too deeply") from None
    try:
        _render(template, copy.deepcopy(_SAMPLE))  # a fresh one: a template may change it (node.macs.append)
    except TemplateLimitError as e:
        raise ValidationError(field, f"tried on a sample node, the template {e.message}") from None
    except Exception:  # noqa: BLE001 - the sample lacks what real nodes have; only limits matter here
        pass
    return source


def render(source: str, context: dict, what: str, kind: str = "args") -> str:
    simple = _render_simple(source, context, kind)
    if simple is not None:
        return simple
    import jinja2

    try:
        return _render(_compile(source, kind), context)
    except jinja2.UndefinedError as e:
        raise RenderError(f"{what}: {e.message}") from None
    except jinja2.TemplateError as e:
        raise RenderError(f"{what}: {e}") from None
    except RecursionError:
        raise RenderError(f"{what}: the template recursed too deeply") from None
    except (ArithmeticError, TypeError, ValueError, LookupError) as e:
        raise RenderError(f"{what}: {type(e).__name__}: {e}") from None


def render_config(profile: dict, context: dict) -> tuple[str, str]:
    """The node's rendered config and its content type."""
    kind = profile["config_format"]
    text = render(profile["config_template"], context, f"profile {profile['name']!r} config_template",
                  kind if kind in _FINALIZE else "none")
    if kind == "ignition":
        try:
            json.loads(text)
        except ValueError as e:
            raise RenderError(f"profile {profile['name']!r}: the rendered Ignition is not valid JSON: {e}") from None
        return text, "application/vnd.coreos.ignition+json"
    if text.startswith("#cloud-config"):
        import yaml

        try:
            yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise RenderError(f"profile {profile['name']!r}: the rendered cloud-config is not valid YAML: {e}") \
                from None
    return text, "text/cloud-config; charset=utf-8"


def _plain_image_url(base: str) -> Callable[[str], str]:
    from bootfleet.validation import check_image_ref

    def url(key: str) -> str:
        key = check_image_ref(str(key), "image_url()")
        return Url(key if key.startswith(("http://", "https://")) else f"{base}/images/{key}")

    return url


def node_context(node: dict, profile: dict, deployment: dict | None, base: str, token: str,
                 images: Callable[[str], str] | None = None) -> dict:
    """What a profile's templates may use. `images`: `image_url('key')` in a template, the URL of
    any object in the images store, signed when the store signs (providers/storage/choose.image_url,
    as the kernel's); without it, the object's URL under base/images/."""
    from bootfleet.boot.urls import node_urls

    urls = {name: Url(url) for name, url in node_urls(base, node["id"], token).items()}
    macs = node.get("macs") or []
    return {
        "node": {
            "id": node["id"],
            "hostname": node.get("hostname") or f"node-{node['id'][:8]}",
            "mac": macs[0] if macs else "",
            "macs": macs,
            "ip": node.get("ip") or "",
            "uuid": node.get("smbios_uuid") or "",
            "serial": node.get("serial") or "",
            "labels": node.get("labels") or {},
            "instance_id": node.get("instance_id") or "",
        },
        "profile": {"name": profile["name"], "metadata": profile.get("metadata") or {}},
        "metadata": profile.get("metadata") or {},
        "deployment": (
            {"id": deployment["id"], "name": deployment["name"], "dns_zone": deployment.get("dns_zone") or "",
             "spec": deployment.get("spec") or {}}
            if deployment else None
        ),
        "base_url": Url(base),
        "token": token,
        "image_url": images or _plain_image_url(base),
        "config_url": urls["ignition_url"] if profile["config_format"] == "ignition" else urls["user_data_url"],
        **urls,
    }


# What check_template tries a template on: a node with every field set.
_SAMPLE = node_context(
    {"id": "00000000-0000-4000-8000-000000000000", "hostname": "sample-0", "macs": ["52:54:00:00:00:00"],
     "ip": "10.0.0.1", "smbios_uuid": "00000000-0000-4000-8000-000000000000", "serial": "S0", "labels": {},
     "instance_id": "i-0"},
    {"name": "sample", "metadata": {}, "config_format": "cloud-init"},
    {"id": "00000000-0000-4000-8000-000000000001", "name": "sample", "dns_zone": "example.com", "spec": {}},
    "http://bootfleet.example", "0.sample")


class _SampleLabels(dict):
    """A sample node's labels: the profile's selectors, and any other label a template names
    (labels are each node's own: only a real node can tell one is missing)."""

    def __missing__(self, key: str) -> str:
        return f"sample-{key}"


def sample_context(profile: dict, images: Callable[[str], str] | None = None) -> dict:
    """What a profile's templates see for a sample node that the profile would boot: every node
    field set, its labels those the profile selects (any other label reads as `sample-<name>`),
    in a sample deployment."""
    context = node_context(
        {"id": "00000000-0000-4000-8000-000000000000", "hostname": "sample-0", "macs": ["52:54:00:00:00:00"],
         "ip": "10.0.0.1", "smbios_uuid": "00000000-0000-4000-8000-000000000000", "serial": "S0",
         "instance_id": "i-0"},
        profile,
        {"id": "00000000-0000-4000-8000-000000000001", "name": "sample", "dns_zone": "example.com", "spec": {}},
        "http://bootfleet.example", "0.sample", images)
    context["node"]["labels"] = _SampleLabels(profile.get("selectors") or {})
    return context


def render_profile(profile: dict, context: dict) -> dict:
    """Render a profile's kernel args and config for one node's context: {"args", "config"
    (None for config_format none)}. Raises RenderError naming the template and what is missing."""
    args = render(profile.get("args") or "", context, f"profile {profile['name']!r} args")
    config = None
    if profile.get("config_format", "none") != "none":
        config = render_config(profile, context)[0]
    return {"args": args, "config": config}


def check_profile(profile: dict) -> None:
    """Raise ValidationError (the field, what is missing) when the profile's templates cannot be
    rendered for a sample node it would boot (sample_context): what saving a profile checks, so
    a template error shows before a machine meets it."""
    context = sample_context(profile)
    try:
        render(profile.get("args") or "", context, "args")
    except RenderError as e:
        raise ValidationError("args", f"rendered for a sample node: {e.message.removeprefix('args: ')}") from None
    if profile.get("config_format", "none") == "none" or not profile.get("config_template"):
        return
    try:
        render_config({**profile, "name": profile["name"]}, context)
    except RenderError as e:
        raise ValidationError("config_template", f"rendered for a sample node: {e.message}") from None
