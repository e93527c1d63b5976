"""How operator commands print: tables, one item, JSON, a deployment's progress line."""

from __future__ import annotations

import json
from typing import Any


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
