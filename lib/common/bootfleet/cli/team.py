"""`bootfleet token | audit | webhook`: scoped API tokens, the audit log, signed webhooks
(issue 23; roles.py, web/team.py)."""

from __future__ import annotations

import argparse
import re
import sys

from bootfleet.cli.args import Sub
from bootfleet.cli.config import connect
from bootfleet.cli.events import since_param
from bootfleet.cli.output import print_json, print_table, show
from bootfleet.cli.prompt import confirm
from bootfleet.roles import ROLES
from bootfleet.settings import Settings

_DURATION = re.compile(r"^(\d+)\s*([mhdw])$")
_UNIT = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
TOKEN_COLUMNS = ["name", "role", "created_at", "last_used_at", "expires_at", "created_by"]


def duration(raw: str) -> int:
    """--expires 30d: seconds (m, h, d, w)."""
    match = _DURATION.fullmatch(raw.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{raw!r}: give a duration like 90m, 12h, 30d or 8w")
    return int(match.group(1)) * _UNIT[match.group(2)]


def add_team_parsers(sub) -> None:
    p = sub.add("token", "scoped API tokens: create (shown once), list, revoke (admin)")
    actions = Sub(p, "action", "ACTION")
    a = actions.add("create", "a new token with a role")
    a.add_argument("--name", required=True, help="who or what holds it (grafana, ci, alice)")
    a.add_argument("--role", required=True, choices=ROLES,
                   help="admin: everything; operator: profiles, deployments, nodes; viewer: read only;"
                        " metrics: the /metrics endpoints")
    a.add_argument("--expires", type=duration, help="it stops working after this long: 90m, 12h, 30d, 8w")
    a = actions.add("list", "name, role, created, last used, expiry")
    a.add_argument("--revoked", action="store_true", help="revoked tokens too")
    a = actions.add("revoke", "a token stops working at once")
    a.add_argument("name", help="the token's name (or id)")
    p.set_defaults(func=cmd_token)

    p = sub.add("audit", "who changed what through the API, newest first")
    p.add_argument("--since", help="an age like 10m, 2h, 1d, an ISO time, or an entry id")
    p.add_argument("--actor", help="a token's name (the bootstrap admin token is 'admin')")
    p.add_argument("--target", help="deployment/rack1, or every target under one: deployment")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=cmd_audit)


def cmd_token(args, settings: Settings) -> None:
    client = connect(args, settings)
    if args.action == "create":
        body = {"name": args.name, "role": args.role, **({"expires_in": args.expires} if args.expires else {})}
        created = client.call("POST", "/config/api/v1/tokens", body)
        if args.json:
            print_json(created)
            return
        print(created["token"])
        expiry = f", expires {created['expires_at']}" if created.get("expires_at") else ", never expires"
        print(f"token {created['name']!r} ({created['role']}{expiry}): shown this once; keep it now",
              file=sys.stderr)
    elif args.action == "list":
        data = client.call("GET", "/config/api/v1/tokens", params={"revoked": "true"} if args.revoked else None)
        if args.json:
            print_json(data)
        elif data["items"]:
            print_table(data["items"], TOKEN_COLUMNS + (["revoked_at"] if args.revoked else []))
        else:
            print("no API tokens (bootfleet token create --name NAME --role viewer)")
    else:
        confirm(args, f"revoke token {args.name}?")
        show(args, client.call("DELETE", f"/config/api/v1/tokens/{args.name}"))


AUDIT_COLUMNS = ["id", "at", "actor", "action", "target", "outcome", "changes", "client_address", "request_id"]


def _changed(changes: dict) -> str:
    return "; ".join(f"{k}: {v.get('old')!r} -> {v.get('new')!r}" for k, v in changes.items())


def cmd_audit(args, settings: Settings) -> None:
    client = connect(args, settings)
    params = {"since": since_param(args.since), "actor": args.actor, "target": args.target, "limit": args.limit}
    data = client.call("GET", "/config/api/v1/audit", params={k: v for k, v in params.items() if v})
    if args.json:
        print_json(data)
        return
    if not data["items"]:
        print("no audit entries")
        return
    items = [{**i, "at": i["at"][:19].replace("T", " "), "changes": _changed(i["changes"])} for i in data["items"]]
    print_table(items, AUDIT_COLUMNS)
