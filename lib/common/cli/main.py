"""The `bootfleet` command: run the system, and operate it over its HTTP API.

    bootfleet serve                     the whole system on 127.0.0.1:8080
    bootfleet migrate                   apply database migrations
    bootfleet profile|deployment|node   list, get, create, update, delete
    bootfleet status DEPLOYMENT         a deployment's progress
    bootfleet watch DEPLOYMENT          the same, live, until it is done
    bootfleet events                    the event stream
    bootfleet images upload|list|rm     boot images in the configured storage
    bootfleet cleanup [--dry-run]       run cleanup now
    bootfleet dns reconcile|records     DNS records at the provider

Operator commands talk to --url (BOOTFLEET_URL, default http://127.0.0.1:8080)
with --token (BOOTFLEET_ADMIN_TOKEN, or the local .data/secrets.json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import requests

DEFAULT_URL = "http://127.0.0.1:8080"


class CliError(Exception):
    """Something the operator should read; printed without a traceback."""


# --- talking to the API ---------------------------------------------------------------


class Client:
    def __init__(self, url: str, token: str | None):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: Any = None, params: dict | None = None) -> Any:
        try:
            resp = self.session.request(method, self.url + path, json=body, params=params, timeout=30)
        except requests.ConnectionError:
            raise CliError(f"cannot reach bootfleet at {self.url}; is it running (make run)?") from None
        if resp.status_code == 204:
            return None
        try:
            data = resp.json()
        except ValueError:
            data = {"error": resp.text.strip()}
        if resp.status_code >= 400:
            raise CliError(f"{method} {path}: {resp.status_code} {data.get('error', data)}")
        return data


def _token(args) -> str | None:
    if args.token:
        return args.token
    path = Path(os.environ.get("BOOTFLEET_DATA_DIR", ".data")) / "secrets.json"
    if path.exists():
        return json.loads(path.read_text()).get("admin_token")
    return None


# --- output -------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)


def print_table(items: list[dict], columns: list[str]) -> None:
    rows = [[_cell(item.get(c)) for c in columns] for item in items]
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def print_item(item: dict) -> None:
    width = max((len(k) for k in item), default=0)
    for key, value in item.items():
        print(f"{key.ljust(width)}  {_cell(value)}")


COLUMNS = {
    "profile": ["name", "kernel", "config_format", "selectors", "id"],
    "deployment": ["name", "state", "provider", "count", "dns_zone", "id"],
    "node": ["id", "hostname", "macs", "ip", "stage", "last_seen"],
}


def show(args, data: Any, kind: str | None = None) -> None:
    if args.json:
        print(json.dumps(data, indent=2))
    elif data is None:
        print("done")
    elif isinstance(data, dict) and "items" in data:
        print_table(data["items"], COLUMNS[kind])
        shown = len(data["items"])
        if data["total"] > shown:
            print(f"({shown} of {data['total']}; --offset {data['offset'] + shown} for more)")
    else:
        print_item(data)


def progress_line(status: dict) -> str:
    counts = {k: v for k, v in status["counts"].items() if v}
    width = 30
    filled = int(width * status["percent"] / 100)
    bar = "#" * filled + "." * (width - filled)
    parts = " ".join(f"{k}={v}" for k, v in counts.items()) or "no nodes"
    return f"{status['deployment']['name']} [{bar}] {status['percent']:5.1f}%  {parts}"


# --- commands -------------------------------------------------------------------------------


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


def cmd_resource(args) -> None:
    client = Client(args.url, _token(args))
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


def cmd_status(args) -> None:
    client = Client(args.url, _token(args))
    status = client.call("GET", f"/status/deployments/{args.deployment}")
    if args.json:
        print(json.dumps(status, indent=2))
        return
    print(progress_line(status))
    for node in status["failed"]:
        print(f"  failed  {node['id']} {node['hostname'] or ''}  {node['last_message'] or ''}")
    for node in status["stuck"]:
        print(f"  stuck   {node['id']} {node['hostname'] or ''}  {node['stage']} for {node['seconds_in_stage']} s")


def cmd_watch(args) -> None:
    """Progress and new events, live, until every node is ready (or --timeout)."""
    client = Client(args.url, _token(args))
    cursor = 0
    last_line, last_print = "", 0.0
    deadline = time.monotonic() + args.timeout if args.timeout else None
    while True:
        status = client.call("GET", f"/status/deployments/{args.deployment}")
        events = client.call("GET", "/status/events", params={"deployment": args.deployment, "since": cursor})
        for event in events["events"]:
            node = (event["node_id"] or "")[:8]
            print(f"  {event['created_at'][11:19]} {node:8} {event['stage'] or event['kind']:14} {event['message']}")
        cursor = events["next"]
        line = progress_line(status)
        if line != last_line or events["events"] or time.monotonic() - last_print > 15:
            print(line, flush=True)  # on a change, or now and then to show it is alive
            last_line, last_print = line, time.monotonic()
        if status["done"]:
            print("all nodes ready")
            return
        if deadline and time.monotonic() > deadline:
            raise CliError(f"not done after {args.timeout} s")
        time.sleep(args.interval)


def cmd_events(args) -> None:
    client = Client(args.url, _token(args))
    params = {"since": args.since, "limit": args.limit}
    if args.deployment:
        params["deployment"] = args.deployment
    data = client.call("GET", "/status/events", params=params)
    if args.json:
        print(json.dumps(data, indent=2))
        return
    print_table(data["events"], ["id", "created_at", "node_id", "stage", "source", "message"])


def cmd_dns(args) -> None:
    client = Client(args.url, _token(args))
    if args.action == "records":
        params = {"limit": args.limit, **({"deployment": args.deployment} if args.deployment else {})}
        data = client.call("GET", "/dns/records", params=params)
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            print_table(data["items"], ["zone", "name", "type", "value"])
        return
    body = {"dry_run": args.dry_run, **({"deployment": args.deployment} if args.deployment else {})}
    result = client.call("POST", "/dns/reconcile", body)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    counts = result["counts"]
    print(("plan (dry run): " if result["dry_run"] else "") + ", ".join(f"{k} {v}" for k, v in counts.items())
          + f"; provider writes {result['provider_writes']}")
    for op in result["plan"]:
        print(f"  {op['action']:7} {op['type']:5} {op['name']} {op['value']}")
    for item in result["conflicts"] + result["failed"]:
        print(f"  problem: {item}")


def cmd_cleanup(args) -> None:
    client = Client(args.url, _token(args))
    summary = client.call("POST", "/cleanup/run", params={"dry_run": "true" if args.dry_run else "false"})
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(("plan (dry run): " if summary["dry_run"] else "") + summary["message"])
    for action, count in sorted(summary["counts"].items()):
        print(f"  {action:22} {count}")
    for error in summary["errors"]:
        print(f"  error: {error['action']}: {error['error']}")


def cmd_serve(args) -> None:
    from bootfleet.cli.serve import serve

    os.environ.setdefault("BOOTFLEET_DB_POOL_SIZE", str(args.threads))
    serve(args.host, args.port, args.workers, args.threads, demo=not args.no_demo)


def cmd_migrate(args) -> None:
    from bootfleet.cli.serve import prepare_environment
    from bootfleet.db import get_database
    from bootfleet.db.migrate import apply_migrations

    prepare_environment()
    applied = apply_migrations(get_database())
    print(f"applied: {', '.join(applied)}" if applied else "the database is up to date")


# --- argument parsing --------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bootfleet", description="Network-boot and provision fleets of machines.")
    parser.add_argument("--url", default=os.environ.get("BOOTFLEET_URL", DEFAULT_URL), help="bootfleet's base URL")
    parser.add_argument("--token", default=os.environ.get("BOOTFLEET_ADMIN_TOKEN"), help="the admin token")
    parser.add_argument("--json", action="store_true", help="print JSON as the API answers it")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the whole system locally")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8080)))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--no-demo", action="store_true", help="do not create the demo profile")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("migrate", help="apply database migrations")
    p.set_defaults(func=cmd_migrate)

    for kind in ("profile", "deployment", "node"):
        p = sub.add_parser(kind, help=f"manage {kind}s")
        actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
        a = actions.add_parser("list", help=f"list {kind}s")
        a.add_argument("--limit", type=int, default=100)
        a.add_argument("--offset", type=int, default=0)
        if kind == "node":
            a.add_argument("--deployment")
            a.add_argument("--stage")
        key_help = "id" if kind == "node" else "id or name"
        for action in ("get", "delete") + (("reinstall",) if kind == "node" else ()):
            a = actions.add_parser(action, help=f"{action} a {kind}")
            a.add_argument("key", help=key_help)
        if kind == "deployment":  # provisioning: docs/vpc.md
            a = actions.add_parser("scale", help="change how many nodes (and servers) a deployment has")
            a.add_argument("key", help=key_help)
            a.add_argument("count", type=int)
            a = actions.add_parser("reconcile", help="one provisioning pass now")
            a.add_argument("key", help=key_help)
        for action in ("create", "update"):
            a = actions.add_parser(action, help=f"{action} a {kind}")
            if action == "update":
                a.add_argument("key", help=key_help)
            a.add_argument("--from-file", help="a JSON file with the whole body")
            _resource_options(a, kind)
        p.set_defaults(func=cmd_resource, resource=kind)

    p = sub.add_parser("status", help="a deployment's progress")
    p.add_argument("deployment")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("watch", help="watch a deployment's progress live")
    p.add_argument("deployment")
    p.add_argument("--interval", type=float, default=2.0)
    p.add_argument("--timeout", type=float, default=0, help="give up after this many seconds (0: never)")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("dns", help="reconcile DNS records, or list the ones bootfleet owns")
    p.add_argument("action", choices=["reconcile", "records"])
    p.add_argument("--deployment", help="only this deployment's records")
    p.add_argument("--dry-run", action="store_true", help="reconcile: show the plan, change nothing")
    p.add_argument("--limit", type=int, default=500, help="records: how many")
    p.set_defaults(func=cmd_dns)

    p = sub.add_parser("cleanup", help="run cleanup now (what the cron runs every 5 minutes)")
    p.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    p.set_defaults(func=cmd_cleanup)

    p = sub.add_parser("events", help="the event stream")
    p.add_argument("--since", default="0", help="event id or ISO time")
    p.add_argument("--deployment")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=cmd_events)

    from bootfleet.cli.images import add_images_parser  # bootfleet images upload|list|rm (straight to storage)

    add_images_parser(sub)
    return parser


def _resource_options(a: argparse.ArgumentParser, kind: str) -> None:
    if kind == "profile":
        a.add_argument("--name")
        a.add_argument("--kernel", help="image key or URL")
        a.add_argument("--initrd", action="append", help="image key or URL (repeat for more)")
        a.add_argument("--args", help="kernel arguments (a template)")
        a.add_argument("--config-format", choices=["none", "ignition", "cloud-init"])
        a.add_argument("--template", help="file holding the Ignition / cloud-init template")
        a.add_argument("--selector", action="append", help="key=value label this profile selects")
    elif kind == "deployment":
        a.add_argument("--name")
        a.add_argument("--profile")
        a.add_argument("--count", type=int)
        a.add_argument("--provider", choices=["none", "local", "ibm"])
        a.add_argument("--dns-zone")
        a.add_argument("--placement", action="append",
                       help="key=value (repeat): zone, vpc, subnet, profile, kind, image, keys (docs/vpc.md)")
    else:
        a.add_argument("--mac", action="append", help="MAC address (repeat for more)")
        a.add_argument("--uuid", help="SMBIOS UUID")
        a.add_argument("--serial")
        a.add_argument("--hostname")
        a.add_argument("--ip")
        a.add_argument("--label", action="append", help="key=value")
        a.add_argument("--profile")
        a.add_argument("--deployment")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CliError as e:
        print(f"bootfleet: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
