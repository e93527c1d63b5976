"""`bootfleet status | watch | events | dns | cleanup`: operator commands over the HTTP API
that are not resources."""

from __future__ import annotations

import json
import time

from bootfleet.cli.client import CliError, connect
from bootfleet.cli.output import print_table, progress_line
from bootfleet.settings import Settings


def cmd_status(args, settings: Settings) -> None:
    client = connect(args, settings)
    status = client.call("GET", f"/status/deployments/{args.deployment}")
    if args.json:
        print(json.dumps(status, indent=2))
        return
    print(progress_line(status))
    for node in status["failed"]:
        print(f"  failed  {node['id']} {node['hostname'] or ''}  {node['last_message'] or ''}")
    for node in status["stuck"]:
        print(f"  stuck   {node['id']} {node['hostname'] or ''}  {node['stage']} for {node['seconds_in_stage']} s")


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


def cmd_events(args, settings: Settings) -> None:
    client = connect(args, settings)
    params = {"since": args.since, "limit": args.limit}
    if args.deployment:
        params["deployment"] = args.deployment
    data = client.call("GET", "/status/events", params=params)
    if args.json:
        print(json.dumps(data, indent=2))
        return
    print_table(data["events"], ["id", "created_at", "node_id", "stage", "source", "message"])


def cmd_dns(args, settings: Settings) -> None:
    client = connect(args, settings)
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


def cmd_cleanup(args, settings: Settings) -> None:
    client = connect(args, settings)
    summary = client.call("POST", "/cleanup/run", params={"dry_run": "true" if args.dry_run else "false"})
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(("plan (dry run): " if summary["dry_run"] else "") + summary["message"])
    for action, count in sorted(summary["counts"].items()):
        print(f"  {action:22} {count}")
    for error in summary["errors"]:
        print(f"  error: {error['action']}: {error['error']}")
