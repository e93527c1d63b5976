"""Printing the event stream: the newest first, or (--follow) the newest then each new one
as it comes; `--since` takes an event id, an ISO time or an age (10m, 2h, 1d)."""

from __future__ import annotations

import datetime
import json
import re
import sys
import time

from bootfleet.cli.client import Client, CliError, UnreachableError
from bootfleet.cli.output import console, print_json, print_table

COLUMNS = ["id", "created_at", "node", "kind", "stage", "source", "message"]
_AGE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def since_param(raw: str | None) -> str:
    """--since as the API takes it: an event id or an ISO time (an age becomes the time it was)."""
    if not raw:
        return ""
    raw = raw.strip()
    if raw.isascii() and raw.isdigit():
        return raw
    age = _AGE.fullmatch(raw.lower())
    if age:
        seconds = int(age.group(1)) * _UNIT[age.group(2)]
        return (datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds)).isoformat()
    try:
        datetime.datetime.fromisoformat(raw)  # 3.11: takes a trailing Z too
    except ValueError:
        raise CliError(f"--since {raw!r}: give an age like 10m, 2h or 1d, an ISO time, or an event id") from None
    return raw


def node_name(event: dict) -> str:
    """The event's node as operators name it: its hostname, else the start of its id."""
    return event.get("hostname") or (event["node_id"] or "-")[:8]


def line(event: dict) -> str:
    what = event["stage"] or event["kind"]
    return (f"{event['created_at'][:19].replace('T', ' ')}  {node_name(event):12}  {what:14} {event['source']:9}"
            f" {event['message']}")


def show_events(args, client: Client, params: dict) -> None:
    if args.tail < 1:
        raise CliError("--tail: 1 or more")
    query = {**params, "since": since_param(args.since), "limit": min(args.tail, 5000), "order": "desc"}
    data = client.call("GET", "/status/events", params=query)
    newest = data["events"]
    if not args.follow:
        if args.json:
            print_json(data)
        elif newest:
            print_table([{**e, "node": node_name(e) if e["node_id"] else None} for e in newest], COLUMNS)
        else:
            print("no events")
        return
    out = console()
    if newest:
        cursor = max(e["id"] for e in newest)
    else:  # nothing since then: follow from the newest event there is now
        latest = client.call("GET", "/status/events", params={**params, "limit": 1, "order": "desc"})["events"]
        cursor = latest[0]["id"] if latest else 0
    for event in reversed(newest):  # the tail in time order, then what comes
        _emit(args, out, event)
    lost = False
    while True:
        time.sleep(args.interval if not lost else max(args.interval, 1.0))
        try:
            page = client.call("GET", "/status/events", params={**params, "since": cursor, "limit": 500})
        except UnreachableError as e:  # a restart, a network blip: keep the cursor and ask again
            if not lost:
                print(f"bootfleet: {e}; reconnecting (Ctrl-C to stop)", file=sys.stderr, flush=True)
            lost = True
            continue
        if lost:
            print("bootfleet: reconnected", file=sys.stderr, flush=True)
            lost = False
        for event in page["events"]:
            _emit(args, out, event)
        cursor = max(cursor, page["next"])


def _emit(args, out, event: dict) -> None:
    if args.json:
        print(json.dumps(event), flush=True)
    else:
        out.print(line(event), markup=False, highlight=False)
        out.file.flush()
