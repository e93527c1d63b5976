"""`bootfleet profile|deployment|node ...`: list, get, create, update, delete (and scale,
reconcile, reinstall) over the operator API."""

from __future__ import annotations

import json
from pathlib import Path

from bootfleet.cli.client import CliError, connect
from bootfleet.cli.output import show
from bootfleet.settings import Settings


def _labels(pairs: list[str] | None) -> dict | None:
    if pairs is None:
        return None
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CliError(f"--label takes key=value, got {pair!r}")
        labels[key] = value
    return labels


def _body(args, names: list[str]) -> dict:
    body = {}
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            body[name] = value
    return body


def cmd_resource(args, settings: Settings) -> None:
    client = connect(args, settings)
    kind = args.resource
    base = f"/config/api/v1/{kind}s"
    if args.action == "list":
        params = {"limit": args.limit, "offset": args.offset}
        if kind == "node":
            params.update({k: v for k, v in (("deployment", args.deployment), ("stage", args.stage)) if v})
        show(args, client.call("GET", base, params=params), kind)
    elif args.action == "get":
        show(args, client.call("GET", f"{base}/{args.key}"))
    elif args.action == "delete":
        show(args, client.call("DELETE", f"{base}/{args.key}"))
    elif args.action == "reinstall":
        show(args, client.call("POST", f"{base}/{args.key}/reinstall"))
    elif args.action == "scale":
        show(args, client.call("PATCH", f"{base}/{args.key}", {"count": args.count}))
    elif args.action == "reconcile":
        show(args, client.call("POST", f"{base}/{args.key}/reconcile"))
    else:
        body = _resource_body(args, kind)
        if args.action == "create":
            show(args, client.call("POST", base, body))
        else:
            show(args, client.call("PATCH", f"{base}/{args.key}", body))


def _resource_body(args, kind: str) -> dict:
    if getattr(args, "from_file", None):
        return json.loads(Path(args.from_file).read_text())
    if kind == "profile":
        body = _body(args, ["name", "kernel", "args", "config_format"])
        if args.initrd is not None:
            body["initrds"] = args.initrd
        if args.template is not None:
            body["config_template"] = Path(args.template).read_text()
        if args.selector is not None:
            body["selectors"] = _labels(args.selector)
        return body
    if kind == "deployment":
        body = _body(args, ["name", "profile", "count", "provider", "dns_zone"])
        if args.placement is not None:
            pairs = [p.partition("=") for p in args.placement]
            if any(not sep for _, sep, _ in pairs):
                raise CliError("--placement takes key=value, e.g. --placement zone=us-south-1")
            body["placement"] = {k: v for k, _, v in pairs}
        return body
    body = _body(args, ["hostname", "ip", "uuid", "serial", "profile", "deployment"])
    if args.mac is not None:
        body["macs"] = args.mac
    if args.label is not None:
        body["labels"] = _labels(args.label)
    return body
