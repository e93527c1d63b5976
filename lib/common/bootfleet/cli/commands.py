"""`bootfleet status | watch | events | dns | cleanup`: operator commands over the HTTP API
that are not resources."""

from __future__ import annotations

import sys
import time

from bootfleet.cli.client import CliError
from bootfleet.cli.config import connect
from bootfleet.cli.events import line, show_events
from bootfleet.cli.output import print_json, print_table, progress_line
from bootfleet.settings import Settings


def _print_status(status: dict) -> None:
    print(progress_line(status))
    for node in status["failed"]:
        print(f"  failed  {node['id']} {node['hostname'] or ''}  {node['last_message'] or ''}")
    for node in status["stuck"]:
        print(f"  stuck   {node['id']} {node['hostname'] or ''}  {node['stage']} for {node['seconds_in_stage']} s")


def cmd_status(args, settings: Settings) -> None:
    """One deployment's progress; `-`: the nodes outside deployments; none: all of them."""
    client = connect(args, settings)
    if args.deployment and args.deployment != "-":
        statuses = [client.call("GET", f"/status/deployments/{args.deployment}")]
    else:
        statuses = []
        if not args.deployment:
            listing = client.call("GET", "/config/api/v1/deployments", params={"limit": 1000, "state": "active"})
            statuses = [client.call("GET", f"/status/deployments/{d['id']}") for d in listing["items"]]
        standalone = client.call("GET", "/status/standalone")
        if standalone["nodes"] or args.deployment == "-":
            statuses.append(standalone)
    if args.json:
        print_json(statuses[0] if args.deployment else statuses)
        return
    if not statuses:
        print("no deployments and no nodes yet (bootfleet node create, bootfleet deployment create)")
    for status in statuses:
        _print_status(status)
    failed, stuck = sum(len(s["failed"]) for s in statuses), sum(len(s["stuck"]) for s in statuses)
    if failed or stuck:  # for scripts: exit status 2, something needs an operator
        print(f"bootfleet: {failed} failed and {stuck} stuck node(s) need an operator", file=sys.stderr)
        raise SystemExit(2)


def cmd_watch(args, settings: Settings) -> None:
    """Progress and new events, live, until every node is ready (or --timeout)."""
    client = connect(args, settings)
    cursor = 0
    last_line, last_print = "", 0.0
    deadline = time.monotonic() + args.timeout if args.timeout else None
    while True:
        status = client.call("GET", f"/status/deployments/{args.deployment}")
        events = client.call("GET", "/status/events", params={"deployment": args.deployment, "since": cursor})
        for event in events["events"]:
            print("  " + line(event))
        cursor = events["next"]
        text = progress_line(status)
        if text != last_line or events["events"] or time.monotonic() - last_print > 15:
            print(text, flush=True)  # on a change, or now and then to show it is alive
            last_line, last_print = text, time.monotonic()
        if status["done"]:
            print("all nodes ready")
            return
        ended = _nothing_can_progress(status)
        if ended:
            raise CliError(ended)
        if deadline and time.monotonic() > deadline:
            raise CliError(f"not done after {args.timeout} s")
        time.sleep(args.interval)


# Stages from which a node moves on only when an operator acts (or it is going away).
_STOPPED = ("ready", "failed", "deprovisioning", "deleted")


def _nothing_can_progress(status: dict) -> str | None:
    """Why watching longer is pointless, or None: the deployment is going away, or every node
    that is not ready stopped (failed, or being deleted)."""
    deployment = status.get("deployment") or {}
    if deployment.get("state") in ("deleting", "deleted"):
        return f"deployment {deployment['name']} is {deployment['state']}; nothing left can progress"
    moving = sum(n for stage, n in status["counts"].items() if stage not in _STOPPED)
    if not status["nodes"] or moving:
        return None
    failed = status["failed"]
    names = ", ".join(f"{f.get('hostname') or f['id'][:8]} ({f.get('last_message') or 'no message'})"
                      for f in failed[:10])
    return (f"{len(failed)} of {status['nodes']} node(s) failed and nothing left can progress"
            + (f": {names}" if names else "") + " (bootfleet node reinstall NODE to try again)")


def cmd_events(args, settings: Settings) -> None:
    client = connect(args, settings)
    show_events(args, client, {"deployment": args.deployment} if args.deployment else {})


def cmd_dns(args, settings: Settings) -> None:
    client = connect(args, settings)
    if args.action == "records":
        params = {"limit": args.limit, **({"deployment": args.deployment} if args.deployment else {})}
        data = client.call("GET", "/dns/records", params=params)
        if args.json:
            print_json(data)
        else:
            print_table(data["items"], ["zone", "name", "type", "value"])
        return
    body = {"dry_run": args.dry_run, **({"deployment": args.deployment} if args.deployment else {})}
    result = client.call("POST", "/dns/reconcile", body)
    if args.json:
        print_json(result)
        return
    counts = result["counts"]
    print(("plan (dry run): " if result["dry_run"] else "") + ", ".join(f"{k} {v}" for k, v in counts.items())
          + f"; provider writes {result['provider_writes']}")
    for op in result["plan"]:
        print(f"  {op['action']:7} {op['type']:5} {op['name']} {op['value']}")
    for item in result["conflicts"] + result["failed"]:
        print(f"  problem: {item}")
    if result["failed"]:
        raise CliError(f"{len(result['failed'])} DNS change(s) failed")


def _named(item: dict) -> str:
    """One cleanup action's target in words: the node by hostname (and id), the server, the record."""
    details = {k: v for k, v in item.items() if k != "action" and v not in (None, "")}
    words = []
    if "hostname" in details or "node_id" in details:
        node = details.pop("hostname", None)
        node_id = details.pop("node_id", None)
        words.append(f"node {node} ({node_id})" if node and node_id else f"node {node or node_id}")
    words += [f"{k} {v}" for k, v in details.items()]
    return ", ".join(words)


def cmd_cleanup(args, settings: Settings) -> None:
    client = connect(args, settings)
    summary = client.call("POST", "/cleanup/run", params={"dry_run": "true" if args.dry_run else "false"},
                          timeout=args.timeout)
    if args.json:
        print_json(summary)
    else:
        print(("plan (dry run): " if summary["dry_run"] else "") + summary["message"])
        for action, count in sorted(summary["counts"].items()):
            print(f"  {action:22} {count}")
        if summary.get("actions"):  # what it touched, or on a dry run would touch, by name
            print("would touch:" if summary["dry_run"] else "touched:")
            for item in summary["actions"]:
                print(f"  {item['action']:22} {_named(item)}")
            listed, _, total = summary.get("actions_listed", "").partition(" of ")
            if listed and total and listed != total:
                print(f"  ... {listed} of {total} listed")
    if summary["errors"]:
        first = summary["errors"][0]
        raise CliError(f"cleanup had {len(summary['errors'])} error(s); first: {first['action']}: {first['error']}")
