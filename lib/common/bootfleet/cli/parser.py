"""The `bootfleet` command's arguments (argparse, with argcomplete for shell completion).

The global options (--url, --token, --json, --yes) are accepted anywhere on the line
(args.py)."""

from __future__ import annotations

import argparse

from bootfleet.cli import commands, declare, fleet, resources
from bootfleet.cli.args import Parser, Sub, globals_parser
from bootfleet.cli.images import add_images_parser
from bootfleet.cli.serve import cmd_migrate, cmd_serve
from bootfleet.cli.team import add_team_parsers
from bootfleet.stages import ALL as STAGES

VERSION = "0.1.0"
# How long `bootfleet cleanup` waits for its pass: longer than the gateway's read timeout (60 s)
# and the app's request timeout (120 s), so a long pass is not reported failed while it carries on.
CLEANUP_TIMEOUT = 150.0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bootfleet", description="Network-boot and provision fleets of machines.",
                                     parents=[globals_parser(defaults=True)])
    parser.add_argument("--version", action="version", version=f"bootfleet {VERSION}")
    sub = Sub(parser, "command", "COMMAND")

    p = sub.add("serve", "run the whole system locally")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, help="the port to listen on (else PORT, else 8080)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--no-demo", action="store_true", help="do not create the demo profile")
    p.add_argument("--no-cleanup", action="store_true",
                   help="do not run cleanup on its schedule (BOOTFLEET_CLEANUP_EVERY seconds, as the cloud's cron)")
    p.set_defaults(func=cmd_serve)

    p = sub.add("migrate", "apply database migrations (to the database of the server this user runs)")
    p.set_defaults(func=cmd_migrate)

    for kind in ("profile", "deployment", "node"):
        _resource_parser(sub.add(kind, f"manage {kind}s"), kind)

    p = sub.add("status", "progress: one deployment's, or (without one) every deployment's and the other nodes'")
    p.add_argument("deployment", nargs="?", help="a deployment's id or name; '-': the nodes outside deployments")
    p.set_defaults(func=commands.cmd_status)

    p = sub.add("watch", "watch a deployment's progress live")
    p.add_argument("deployment")
    p.add_argument("--interval", type=float, default=2.0)
    p.add_argument("--timeout", type=float, default=0, help="give up after this many seconds (0: never)")
    p.set_defaults(func=commands.cmd_watch)

    p = sub.add("dns", "reconcile DNS records, or list the ones bootfleet owns")
    p.add_argument("action", choices=["reconcile", "records"])
    p.add_argument("--deployment", help="only this deployment's records")
    p.add_argument("--dry-run", action="store_true", help="reconcile: show the plan, change nothing")
    p.add_argument("--limit", type=int, default=500, help="records: how many")
    p.set_defaults(func=commands.cmd_dns)

    p = sub.add("cleanup", "run cleanup now (what the cron runs every 5 minutes)")
    p.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    p.add_argument("--timeout", type=float, default=CLEANUP_TIMEOUT,
                   help="seconds to wait for the pass to answer (default %(default)s; the cloud's cleanup job waits"
                        " longer than the gateway and the app, infra/terraform request_timeout)")
    p.set_defaults(func=commands.cmd_cleanup)

    p = sub.add("events", "the event stream, newest first (--follow: as it happens)")
    _event_options(p)
    p.add_argument("--deployment")
    p.set_defaults(func=commands.cmd_events)

    p = sub.add("doctor", "check that everything this installation uses is in place")
    p.set_defaults(func=fleet.cmd_doctor)

    add_images_parser(sub)  # bootfleet images upload|list|rm (straight to storage)
    add_team_parsers(sub)  # bootfleet token, audit, webhook: cli/team.py
    declare.add_parsers(sub)  # bootfleet apply, export: cli/declare.py
    return parser


def _event_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", help="only events after this: an event id, an ISO time, or an age like 10m, 2h, 1d")
    p.add_argument("--tail", type=int, default=50, metavar="N", help="the newest N events (default 50)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new events as they come (Ctrl-C stops)")
    p.add_argument("--interval", type=float, default=2.0, help="--follow: seconds between polls")


def _resource_parser(p: argparse.ArgumentParser, kind: str) -> None:
    actions = Sub(p, "action", "ACTION")
    key_help = "id, unique id prefix, MAC or hostname" if kind == "node" else "id or name"
    a = actions.add("list", f"list {kind}s")
    a.add_argument("--limit", type=int, default=100)
    a.add_argument("--offset", type=int, default=0)
    if kind == "node":
        a.add_argument("--deployment", help="a deployment's id or name; '-': nodes outside every deployment")
        a.add_argument("--stage", choices=STAGES)
        a.add_argument("--mac")
        a.add_argument("--hostname")
        a.add_argument("--label", action="append", help="key=value (repeat: all must match)")
        a.add_argument("--all", action="store_true", help="deleted nodes too")
    if kind == "deployment":
        a.add_argument("--state", choices=["active", "deleting", "deleted"])
    actions_for = ("get", "delete") + (("reinstall", "events", "script") if kind == "node" else ())
    helps = {"events": "a node's history", "script": "the boot script this node would get now (changes nothing)"}
    for action in actions_for:
        a = actions.add(action, helps.get(action, f"{action} a {kind}"))
        a.add_argument("key", help=key_help)
        if action == "events":
            _event_options(a)
        if action == "delete" and kind == "profile":
            a.add_argument("--force", action="store_true",
                           help="delete it even though nodes boot it by their labels (they then boot another or none)")
        if action == "script":
            a.add_argument("--config", action="store_true",
                           help="print the Ignition / cloud-init it would fetch instead (both are rendered either way)")
    if kind == "deployment":  # provisioning: docs/vpc.md
        a = actions.add("scale", "change how many nodes (and servers) a deployment has")
        a.add_argument("key", help=key_help)
        a.add_argument("count", type=int)
        a = actions.add("reconcile", "one provisioning pass now")
        a.add_argument("key", help=key_help)
    for action in ("create", "update"):
        a = actions.add(action, f"{action} a {kind}")
        if action == "update":
            a.add_argument("key", help=key_help)
        a.add_argument("--from-file", help="a JSON file with the whole body")
        _resource_options(a, kind)
        if action == "update":
            a.add_argument("--clear", action="append", choices=CLEARABLE[kind], metavar="FIELD",
                           help=f"empty this field (repeat for more): {', '.join(CLEARABLE[kind])}")
            if kind == "node":
                a.add_argument("--unlabel", action="append", metavar="KEY", help="remove this label (repeat for more)")
                a.add_argument("--labels-from-file", metavar="FILE",
                               help="replace all its labels with the key=value lines of FILE (or a JSON object)")
    p.set_defaults(func=resources.cmd_resource, resource=kind)
    if kind == "node":  # issue 22: a held node's requirements overridden (an event), or the override taken back
        a = actions.add("override", "let a node whose inventory fails its profile's requirements install anyway")
        a.add_argument("key", help=key_help)
        a.add_argument("--reason", help="why (kept in the node's event)")
        a.add_argument("--remove", action="store_true", help="take the override back (the node is checked again)")
        a = actions.add("import", "register many nodes from a CSV or JSON file, all or none")
        a.add_argument("file", help="CSV with a header (mac,hostname,ip,labels,profile,deployment) or a JSON list")
        a.add_argument("--update", action="store_true",
                       help="a row whose MAC a node has updates that node (its labels replaced) instead of failing")
        a.set_defaults(func=fleet.cmd_import)
        a = actions.add("unknown", "machines that tried to boot but are no node's")
        a.add_argument("--limit", type=int, default=100)
        a.add_argument("--offset", type=int, default=0)
        a.set_defaults(func=fleet.cmd_unknown)
        a = actions.add("adopt", "make an unknown machine a node, in one step")
        a.add_argument("mac")
        a.add_argument("--profile")
        a.add_argument("--deployment")
        a.add_argument("--hostname")
        a.add_argument("--ip")
        a.add_argument("--label", action="append", help="key=value")
        a.set_defaults(func=fleet.cmd_adopt)


# What `update --clear FIELD` may empty (the API's null), by kind.
CLEARABLE = {"node": ["hostname", "ip", "uuid", "serial", "profile", "deployment"],
             "profile": ["installed_after"], "deployment": ["dns_zone"]}


def _resource_options(a: argparse.ArgumentParser, kind: str) -> None:
    if kind == "profile":
        a.add_argument("--name")
        a.add_argument("--kernel", help="image key or URL")
        a.add_argument("--initrd", action="append", help="image key or URL (repeat for more)")
        a.add_argument("--args", help="kernel arguments (a template)")
        a.add_argument("--config-format", choices=["none", "ignition", "cloud-init"])
        a.add_argument("--template", help="file holding the Ignition / cloud-init template")
        a.add_argument("--selector", action="append", help="key=value label this profile selects")
        a.add_argument("--installed-after", choices=["configuring", "installing", "none"],
                       help="a repeated boot from this stage on means installed: boot the disk (docs/installers.md);"
                            " none: restart the install")
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
        a.add_argument("--label", action="append",
                       help="key=value (repeat); on update it adds or changes this label and keeps the others")
        a.add_argument("--profile")
        a.add_argument("--deployment")
