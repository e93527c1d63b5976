"""How operator commands print: tables (rich), one item, JSON, a deployment's progress line.

Tables go through rich (column widths, a terminal's width, no colour when piped); piped
output is never wrapped or cut, so `grep` and `awk` see whole rows.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(file=stream, highlight=False)
    return Console(file=stream, width=10_000, color_system=None, highlight=False, soft_wrap=True)


def cell(value: Any) -> str:
    """A value as one short cell: lists joined with commas, mappings as k=v, nested values as JSON."""
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(v if isinstance(v, str) else json.dumps(v) for v in value) or "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in value.items()) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def print_table(items: list[dict], columns: list[str]) -> None:
    table = Table(box=box.SIMPLE_HEAD if sys.stdout.isatty() else None, show_edge=False, pad_edge=False,
                  header_style="bold")
    for column in columns:
        table.add_column(column.upper(), no_wrap=True, overflow="ignore")
    for item in items:
        table.add_row(*(cell(item.get(c)) for c in columns))
    out = console()
    if out.is_terminal:
        out.print(table)
        return
    with out.capture() as captured:  # piped: plain rows, no trailing blanks
        out.print(table)
    for line in captured.get().splitlines():
        print(line.rstrip())


def print_item(item: dict) -> None:
    width = max((len(k) for k in item), default=0)
    out = console()
    for key, value in item.items():
        if isinstance(value, str) and "\n" in value:  # a template or a script: as it is, indented
            out.print(f"{key.ljust(width)}  |", markup=False)
            for line in value.rstrip("\n").splitlines():
                out.print(f"    {line}", markup=False)
        else:
            out.print(f"{key.ljust(width)}  {cell(value)}", markup=False)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def warn(message: str) -> None:
    print(f"bootfleet: warning: {message}", file=sys.stderr)


COLUMNS = {
    "profile": ["name", "kernel", "config_format", "selectors", "id"],
    "deployment": ["name", "state", "provider", "count", "dns_zone", "id"],
    "node": ["id", "hostname", "macs", "ip", "stage", "labels", "last_seen"],
    "unknown": ["mac", "attempts", "first_seen", "last_seen", "last_address", "last_reason"],
}


def show(args, data: Any, kind: str | None = None) -> None:
    if args.json:
        print_json(data)
    elif data is None:
        print("done")
    elif isinstance(data, dict) and "items" in data:
        items = [{**i, "stage": f"{i['stage']} (stuck)"} if i.get("stuck") else i for i in data["items"]]
        print_table(items, COLUMNS[kind])
        shown = len(data["items"])
        if data["total"] > shown:
            print(f"({shown} of {data['total']}; --offset {data['offset'] + shown} for more)")
    else:
        for text in data.get("warnings", []) if isinstance(data, dict) else []:
            warn(text)
        print_item({k: v for k, v in data.items() if k != "warnings"} if isinstance(data, dict) else data)


def progress_line(status: dict) -> str:
    counts = {k: v for k, v in status["counts"].items() if v}
    width = 30
    filled = int(width * status["percent"] / 100)
    bar = "#" * filled + "." * (width - filled)
    parts = " ".join(f"{k}={v}" for k, v in counts.items()) or "no nodes"
    name = status["deployment"]["name"] if status.get("deployment") else "(outside deployments)"
    return f"{name} [{bar}] {status['percent']:5.1f}%  {parts}"
