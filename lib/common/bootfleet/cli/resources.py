"""`bootfleet profile|deployment|node ...`: list, get, create, update, delete (and scale,
reconcile, reinstall, a node's events and boot script) over the operator API."""

from __future__ import annotations

import json
from pathlib import Path

from bootfleet.cli.client import CliError
from bootfleet.cli.config import connect
from bootfleet.cli.events import show_events
from bootfleet.cli.output import print_json, show, warn
from bootfleet.cli.prompt import confirm
from bootfleet.settings import Settings


def labels(pairs: list[str] | None, option: str = "--label") -> dict | None:
    if pairs is None:
        return None
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CliError(f"{option} takes key=value, got {pair!r}")
        result[key] = value
    return result


def _body(args, names: list[str]) -> dict:
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def cmd_resource(args, settings: Settings) -> None:
    client = connect(args, settings)
    kind = args.resource
    base = f"/config/api/v1/{kind}s"
    if args.action == "list":
        show(args, client.call("GET", base, params=_list_params(args, kind)), kind)
        return
    if args.action == "create":
        show(args, client.call("POST", base, _resource_body(args, kind)))
        return
    # A node named by a prefix, MAC or hostname: the server says which node that is.
    key = client.call("GET", f"{base}/{args.key}")["id"] if kind == "node" else args.key
    if args.action == "get":
        item = client.call("GET", f"{base}/{key}")
        if kind == "node" and not args.json:  # issue 22: why a node is held, one line each
            for reason in (item.get("requirements") or {}).get("failures", []):
                warn(f"requirement not met: {reason}")
        show(args, item)
    elif args.action == "override":  # issue 22
        path = f"{base}/{key}/requirements/override"
        if args.remove:
            show(args, client.call("DELETE", path))
        else:
            show(args, client.call("POST", path, {"reason": args.reason} if args.reason else None))
    elif args.action == "delete":
        confirm(args, f"delete {kind} {args.key}?")
        force = {"force": "true"} if getattr(args, "force", False) else None
        show(args, client.call("DELETE", f"{base}/{key}", params=force))
    elif args.action == "reinstall":
        confirm(args, f"reinstall node {args.key} (its next boot installs it again)?")
        show(args, client.call("POST", f"{base}/{key}/reinstall"))
    elif args.action == "events":
        show_events(args, client, {"node": key})
    elif args.action == "script":
        preview = client.call("GET", f"{base}/{key}/script")
        if args.json:
            print_json(preview)
            return
        for image in preview["missing_images"]:
            warn(f"image {image!r} is not in storage; this node cannot boot until it is uploaded")
        if args.config:
            if preview.get("config") is None:
                raise CliError(f"node {args.key} gets no config now ({preview['outcome']}; its profile renders"
                               " none, or it boots no installer)")
            print(preview["config"], end="")
            return
        print(preview["script"], end="")
    elif args.action == "scale":
        current = client.call("GET", f"{base}/{key}")
        if args.count < current["count"]:
            confirm(args, f"scale {current['name']} down from {current['count']} to {args.count} nodes"
                          " (their servers are deleted)?")
        show(args, client.call("PATCH", f"{base}/{key}", {"count": args.count}))
    elif args.action == "reconcile":
        show(args, client.call("POST", f"{base}/{key}/reconcile"))
    else:
        show(args, client.call("PATCH", f"{base}/{key}", _resource_body(args, kind)))


def _list_params(args, kind: str) -> dict:
    params = {"limit": args.limit, "offset": args.offset}
    if kind == "deployment" and args.state:
        params["state"] = args.state
    if kind == "node":
        params.update(_body(args, ["deployment", "stage", "mac", "hostname"]))
        if args.label:
            params["label"] = args.label
        if args.all:
            params["deleted"] = "true"
    return params


def read_file(path: str, what: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as e:
        raise CliError(f"{what} {path}: {e.strerror or e}") from None


def _resource_body(args, kind: str) -> dict:
    if getattr(args, "from_file", None):
        text = read_file(args.from_file, "--from-file")
        try:
            body = json.loads(text)
        except ValueError as e:
            raise CliError(f"--from-file {args.from_file}: not JSON ({e}); give the request body as a JSON object"
                           + (" (for a CSV of nodes: bootfleet node import FILE)" if kind == "node" else "")) from None
        if not isinstance(body, dict):
            raise CliError(f"--from-file {args.from_file}: give the request body as a JSON object")
        return body
    body = _fields_body(args, kind)
    for field in getattr(args, "clear", None) or ():
        if field in body:
            raise CliError(f"--clear {field}: and a value for it too; give one")
        body[field] = None
    return body


def _fields_body(args, kind: str) -> dict:
    if kind == "profile":
        body = _body(args, ["name", "kernel", "args", "config_format"])
        if args.initrd is not None:
            body["initrds"] = args.initrd
        if args.template is not None:
            body["config_template"] = read_file(args.template, "--template")
        if args.selector is not None:
            body["selectors"] = labels(args.selector, "--selector")
        if args.installed_after is not None:
            body["installed_after"] = None if args.installed_after == "none" else args.installed_after
        return body
    if kind == "deployment":
        body = _body(args, ["name", "profile", "count", "provider", "dns_zone"])
        if args.placement is not None:
            body["placement"] = labels(args.placement, "--placement")
        return body
    body = _body(args, ["hostname", "ip", "uuid", "serial", "profile", "deployment"])
    if args.mac is not None:
        body["macs"] = args.mac
    updating = args.action == "update"
    if args.label is not None:  # create: its labels; update: merged into the node's (docs/operations.md)
        body["add_labels" if updating else "labels"] = labels(args.label)
    if updating and args.unlabel is not None:
        body["remove_labels"] = args.unlabel
    if updating and args.labels_from_file is not None:
        if args.label is not None or args.unlabel is not None:
            raise CliError("--labels-from-file replaces every label; give it without --label or --unlabel")
        body["labels"] = labels_file(args.labels_from_file)
    return body


def labels_file(path: str) -> dict:
    """A labels file: a JSON object, or key=value lines (blank lines and # comments skipped)."""
    text = read_file(path, "--labels-from-file")
    if text.lstrip().startswith("{"):
        try:
            found = json.loads(text)
        except ValueError as e:
            raise CliError(f"--labels-from-file {path}: not JSON ({e})") from None
        return found
    lines = [line.strip() for line in text.splitlines()]
    return labels([line for line in lines if line and not line.startswith("#")], f"--labels-from-file {path}")

