"""Templates: kernel arguments and each node's Ignition or cloud-init.

jinja2 in a sandbox with StrictUndefined: a template that names a variable
the node does not have fails loudly instead of rendering an empty string.
"""

from __future__ import annotations

import functools
import json

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from bootfleet.errors import RenderError, ValidationError

_env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
_env.filters["tojson"] = lambda value: json.dumps(value)


@functools.lru_cache(maxsize=256)
def _compile(source: str) -> jinja2.Template:
    return _env.from_string(source)


def check_template(source: str, field: str) -> str:
    """Raise ValidationError if `source` is not a valid template."""
    try:
        _compile(source)
    except jinja2.TemplateSyntaxError as e:
        raise ValidationError(field, f"template syntax error on line {e.lineno}: {e.message}") from None
    return source


def render(source: str, context: dict, what: str) -> str:
    try:
        return _compile(source).render(context)
    except jinja2.UndefinedError as e:
        raise RenderError(f"{what}: {e.message}") from None
    except jinja2.TemplateError as e:
        raise RenderError(f"{what}: {e}") from None


def render_config(profile: dict, context: dict) -> tuple[str, str]:
    """The node's rendered config and its content type."""
    text = render(profile["config_template"], context, f"profile {profile['name']!r} config_template")
    if profile["config_format"] == "ignition":
        try:
            json.loads(text)
        except ValueError as e:
            raise RenderError(f"profile {profile['name']!r}: the rendered Ignition is not valid JSON: {e}") from None
        return text, "application/vnd.coreos.ignition+json"
    return text, "text/cloud-config; charset=utf-8"


def node_context(node: dict, profile: dict, deployment: dict | None, base: str, token: str) -> dict:
    """What a profile's templates may use."""
    from bootfleet.boot.urls import node_urls

    urls = node_urls(base, node["id"], token)
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
        "base_url": base,
        "token": token,
        "config_url": urls["ignition_url"] if profile["config_format"] == "ignition" else urls["user_data_url"],
        **urls,
    }
