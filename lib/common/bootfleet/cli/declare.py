"""`bootfleet apply -f fleet.yaml` and `bootfleet export`: a fleet kept as a file (in git).

The file (YAML or JSON; its JSON Schema is cli/fleet.schema.json, `bootfleet export --schema`)
names profiles, deployments, nodes and webhooks. `apply` reads the system through the API,
works out what differs, prints it, and makes it so in order (profiles, deployments, nodes,
webhooks; removals in the reverse order): `--dry-run` prints the plan and changes nothing,
`--prune` also removes what the file no longer names, after asking (`--yes`). A kind the file
leaves out is left alone. A field the file leaves out has the API's default, so a second
apply of the same file changes nothing. `export` writes today's state in the same format,
leaving out the defaults, so `export` then `apply` changes nothing.

Nodes are known by their MACs (a node of the file is the node that has any of its MACs, or its
SMBIOS UUID when it has none); nodes a provider created (they have a server) are a deployment's
business and not in the file. A webhook's secret is made when apply creates it and printed then.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bootfleet import validation
from bootfleet.cli.client import Client, CliError
from bootfleet.cli.config import connect
from bootfleet.cli.prompt import confirm
from bootfleet.settings import Settings

API = "/config/api/v1"
KINDS = ("profiles", "deployments", "nodes", "webhooks")
DEFAULTS = {
    "profiles": {"initrds": [], "args": "", "config_format": "none", "config_template": "", "selectors": {},
                 "metadata": {}, "require_secret": False, "installed_after": None,
                 "requirements": {}, "image": None},  # the last two: issue 22
    "deployments": {"provider": "none", "dns_zone": None, "placement": {}, "spec": {}, "count": 0,
                    "require_secret": False, "requirements": {}},
    "nodes": {"macs": [], "uuid": None, "serial": None, "hostname": None, "ip": None, "labels": {},
              "profile": None, "deployment": None},
    "webhooks": {"active": True},
}
FIELDS = {
    "profiles": ("name", "kernel", *DEFAULTS["profiles"]),
    "deployments": ("name", "profile", *DEFAULTS["deployments"]),
    "nodes": tuple(DEFAULTS["nodes"]),
    "webhooks": ("name", "url", "events", "active"),
}
FIXED = {"deployments": ("provider",)}  # what the API cannot change: delete and create instead


def schema() -> dict:
    return json.loads((resources.files("bootfleet.cli") / "fleet.schema.json").read_text())


# --- reading the file and the system ------------------------------------------------------------


def load(path: str) -> dict:
    import jsonschema

    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CliError(f"{path}: not YAML: {str(e).splitlines()[0]}") from None
    data = {} if data is None else data
    problems = sorted(jsonschema.Draft202012Validator(schema()).iter_errors(data), key=lambda e: list(e.path))
    if problems:
        where = "/".join(str(p) for p in problems[0].absolute_path) or "(top)"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CliError(f"{path}: {where}: {problems[0].message}{more}")
    fleet = {kind: [normal(kind, item) for item in data[kind]] for kind in KINDS if kind in data}
    for kind, items in fleet.items():
        keys = [key(kind, item) for item in items]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise CliError(f"{path}: {kind}: named twice: {', '.join(twice)}")
    return fleet


def normal(kind: str, item: dict) -> dict:
    """The item with every field the API knows, defaults filled in, MACs and UUIDs as the API spells them."""
    item = {**DEFAULTS[kind], **{k: v for k, v in item.items() if k in FIELDS[kind]}}
    if kind == "nodes":
        try:
            item["macs"] = sorted(validation.normalize_mac(m, "macs") for m in item["macs"])
            if item["uuid"]:
                item["uuid"] = validation.normalize_uuid(item["uuid"])
        except validation.ValidationError as e:
            raise CliError(f"nodes: {e}") from None
    if kind == "webhooks":
        item["events"] = list(dict.fromkeys(item["events"]))
    return {name: item.get(name) for name in FIELDS[kind]}


def key(kind: str, item: dict) -> str:
    if kind != "nodes":
        return item["name"]
    return item["macs"][0] if item["macs"] else f"uuid {item['uuid']}"


def _all(client: Client, path: str, params: dict | None = None) -> list[dict]:
    items, offset = [], 0
    while True:
        page = client.call("GET", path, params={**(params or {}), "limit": 1000, "offset": offset})
        items += page["items"]
        offset += len(page["items"])
        if not page["items"] or offset >= page.get("total", offset):
            return items


def current(client: Client, kinds=KINDS) -> dict[str, list[dict]]:
    """The system as the file would say it (ids behind names), with each item's id kept in `_id`."""
    state: dict[str, list[dict]] = {}
    profiles = _all(client, f"{API}/profiles")
    every_deployment = _all(client, f"{API}/deployments")
    profile_names = {p["id"]: p["name"] for p in profiles}
    deployment_names = {d["id"]: d["name"] for d in every_deployment}
    if "profiles" in kinds:
        state["profiles"] = [{**normal("profiles", p), "_id": p["id"]} for p in profiles]
    if "deployments" in kinds:
        state["deployments"] = [
            {**normal("deployments", {**d, "profile": profile_names.get(d["profile_id"])}), "_id": d["id"]}
            for d in every_deployment if d["state"] == "active"]
    if "nodes" in kinds:
        state["nodes"] = [
            {**normal("nodes", {**n, "profile": profile_names.get(n["profile_id"]),
                                "deployment": deployment_names.get(n["deployment_id"])}), "_id": n["id"]}
            for n in _all(client, f"{API}/nodes") if not n.get("instance_id")]
    if "webhooks" in kinds:
        state["webhooks"] = [{**normal("webhooks", w), "_id": w["id"]}
                             for w in client.call("GET", f"{API}/webhooks")["items"]]
    return state


# --- the plan ----------------------------------------------------------------------------------


@dataclass
class Change:
    kind: str
    op: str  # create, update, delete
    key: str
    item: dict = field(default_factory=dict)
    diff: dict = field(default_factory=dict)  # field -> (old, new)
    id: str | None = None

    def line(self) -> str:
        sign = {"create": "+", "update": "~", "delete": "-"}[self.op]
        text = f"{sign} {self.kind[:-1]} {self.key}"
        if self.diff:
            text += ": " + "; ".join(f"{k} {_short(o)} -> {_short(n)}" for k, (o, n) in self.diff.items())
        return text


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _match(kind: str, item: dict, existing: list[dict]) -> dict | None:
    if kind != "nodes":
        return next((e for e in existing if e["name"] == item["name"]), None)
    macs = set(item["macs"])
    return next((e for e in existing if macs & set(e["macs"]) or (not macs and item["uuid"] and
                                                                 e["uuid"] == item["uuid"])), None)


def plan(fleet: dict, state: dict, prune: bool) -> tuple[list[Change], list[Change]]:
    """(the changes to make, in order; what is not in the file and --prune would remove)."""
    changes, extra = [], []
    for kind in KINDS:
        if kind not in fleet:
            continue
        matched = set()
        for item in fleet[kind]:
            found = _match(kind, item, state[kind])
            if found is None:
                changes.append(Change(kind, "create", key(kind, item), item))
                continue
            matched.add(found["_id"])
            diff = {f: (found[f], item[f]) for f in FIELDS[kind] if found[f] != item[f]}
            fixed = [f for f in FIXED.get(kind, ()) if f in diff]
            if fixed:
                raise CliError(f"{kind[:-1]} {key(kind, item)}: {', '.join(fixed)} cannot change"
                               f" ({found[fixed[0]]} -> {item[fixed[0]]}); delete it first, or name a new one")
            if diff:
                changes.append(Change(kind, "update", key(kind, item), item, diff, found["_id"]))
        extra += [Change(kind, "delete", key(kind, e), e, id=e["_id"]) for e in state[kind] if e["_id"] not in matched]
    order = {k: i for i, k in enumerate(KINDS)}
    extra.sort(key=lambda c: -order[c.kind])  # webhooks and nodes go before what they refer to
    return changes + (extra if prune else []), extra


# --- making it so ------------------------------------------------------------------------------


def _body(change: Change) -> dict:
    fields = change.item if change.op == "create" else {f: change.item[f] for f in change.diff}
    if change.op == "create":
        fields = {k: v for k, v in fields.items() if v != DEFAULTS[change.kind].get(k, object())}
        if change.kind == "webhooks":
            fields.pop("active", None)
    return fields


def carry_out(client: Client, change: Change) -> str | None:
    """Make one change; a new webhook's secret is returned (printed once)."""
    base = f"{API}/{change.kind}"
    if change.op == "create":
        made = client.call("POST", base, _body(change))
        if change.kind == "webhooks":
            if not change.item["active"]:
                client.call("PATCH", f"{base}/{made['id']}", {"active": False})
            return made["secret"]
    elif change.op == "update":
        client.call("PATCH", f"{base}/{change.id}", _body(change))
    else:
        client.call("DELETE", f"{base}/{change.id}")
    return None


def cmd_apply(args, settings: Settings) -> None:
    fleet = load(args.file)
    client = connect(args, settings)
    changes, extra = plan(fleet, current(client, [k for k in KINDS if k in fleet]), args.prune)
    for change in changes:
        print(change.line())
    if not args.prune:
        for change in extra:
            print(f"  {change.kind[:-1]} {change.key} is not in the file (--prune removes it)")
    if not changes:
        print("no changes: the system matches the file")
        return
    removals = [c for c in changes if c.op == "delete"]
    if args.dry_run:
        print(f"dry run: {len(changes)} change(s) planned, nothing changed")
        return
    if removals:
        confirm(args, f"remove {len(removals)} thing(s) the file no longer names?")
    for done, change in enumerate(changes):
        try:
            secret = carry_out(client, change)
        except CliError as e:
            raise CliError(f"{change.line().split(':')[0]}: {e} ({done} of {len(changes)} changes made)") from None
        if secret:
            print(f"  webhook {change.key}: secret (shown this once): {secret}", file=sys.stderr)
    print(f"applied {len(changes)} change(s)")


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s,
                                                             style="|" if "\n" in s else None))


def cmd_export(args, settings: Settings) -> None:
    if args.schema:
        print(json.dumps(schema(), indent=2))
        return
    state = current(connect(args, settings))
    out: dict[str, Any] = {"version": 1}
    for kind in KINDS:
        out[kind] = [{k: v for k, v in item.items() if k != "_id" and v != DEFAULTS[kind].get(k, object())}
                     for item in sorted(state[kind], key=lambda i: key(kind, i))]
    text = ("# bootfleet fleet file: bootfleet apply -f FILE (the format: bootfleet export --schema)\n"
            + yaml.dump(out, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120))
    if args.output and args.output != "-":
        Path(args.output).write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def add_parsers(sub) -> None:
    p = sub.add("apply", "make profiles, deployments, nodes and webhooks match a file (YAML or JSON)")
    p.add_argument("-f", "--file", required=True, help="the fleet file ('-': standard input)")
    p.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    p.add_argument("--prune", action="store_true", help="also remove what the file does not name (asks; --yes)")
    p.set_defaults(func=cmd_apply)
    p = sub.add("export", "write today's profiles, deployments, nodes and webhooks as a fleet file")
    p.add_argument("-o", "--output", help="a file to write (default: standard output)")
    p.add_argument("--schema", action="store_true", help="print the fleet file's JSON Schema instead")
    p.set_defaults(func=cmd_export)
