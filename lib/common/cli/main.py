"""The `bootfleet` command: run the system, and operate it over its HTTP API.

    bootfleet serve                     the whole system on 127.0.0.1:8080
    bootfleet migrate                   apply database migrations
    bootfleet profile|deployment|node   list, get, create, update, delete
    bootfleet status DEPLOYMENT         a deployment's progress
    bootfleet watch DEPLOYMENT          the same, live, until it is done
    bootfleet events                    the event stream
    bootfleet images upload|list|rm     boot images in the configured storage
    bootfleet images build-ipxe-disk    the iPXE disk image VPC virtual servers boot
    bootfleet cleanup [--dry-run]       run cleanup now
    bootfleet dns reconcile|records     DNS records at the provider

Operator commands talk to --url (BOOTFLEET_URL, default http://127.0.0.1:8080)
with --token (BOOTFLEET_ADMIN_TOKEN, or the local .data/secrets.json).

This module is the argument parser and the dispatch; the commands live in
resources.py (profile, deployment, node), commands.py (status, watch, events, dns,
cleanup), images.py and serve.py (serve, migrate), over client.py and output.py.
"""

from __future__ import annotations

import argparse
import sys

from bootfleet.cli.client import CliError
from bootfleet.cli.commands import cmd_cleanup, cmd_dns, cmd_events, cmd_status, cmd_watch
from bootfleet.cli.images import add_images_parser
from bootfleet.cli.resources import cmd_resource
from bootfleet.cli.serve import cmd_migrate, cmd_serve
from bootfleet.errors import SettingsError
from bootfleet.settings import get_settings

# --- argument parsing --------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bootfleet", description="Network-boot and provision fleets of machines.")
    # Not given, --url, --token and serve's --port come from the settings (BOOTFLEET_URL,
    # BOOTFLEET_ADMIN_TOKEN, PORT) where they are used: main() reads those after parsing.
    parser.add_argument("--url", help="bootfleet's base URL")
    parser.add_argument("--token", help="the admin token")
    parser.add_argument("--json", action="store_true", help="print JSON as the API answers it")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the whole system locally")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int)
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

    add_images_parser(sub)  # bootfleet images upload|list|rm (straight to storage)
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
        settings = get_settings()  # once; every command is given it
    except SettingsError as e:
        print(f"bootfleet: {e}", file=sys.stderr)
        return 1
    try:
        args.func(args, settings)
    except CliError as e:
        print(f"bootfleet: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
