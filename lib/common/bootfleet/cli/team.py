"""`bootfleet token | audit | webhook`: scoped API tokens, the audit log, signed webhooks
(issue 23; roles.py, web/team.py)."""

from __future__ import annotations

import argparse
import re
import sys
from urllib.parse import urlsplit

from bootfleet.cli.args import Sub, globals_parser
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

    p = sub.add("webhook", "signed webhooks: create, list, delete, and every delivery attempt")
    actions = Sub(p, "action", "ACTION")
    # Its --url is the receiver's: the server's URL goes before the subcommand (bootfleet --url S webhook create).
    # (A parent of its own: "resolve" takes --url away from that parent's action, which parsers share.)
    about = "POST these events to a URL (it must be on BOOTFLEET_WEBHOOK_ALLOW)"
    a = actions.actions.add_parser("create", help=about, description=about, parents=[globals_parser(defaults=False)],
                                   conflict_handler="resolve")
    a.add_argument("--url", dest="hook_url", required=True, help="the receiver's URL")
    a.add_argument("--events", required=True, help="comma separated: node.ready,node.failed,deployment.*  (* for all)")
    a.add_argument("--name", help="default: the URL's host name")
    actions.add("list", "every webhook and its pending deliveries")
    a = actions.add("delete", "remove a webhook and its deliveries")
    a.add_argument("name")
    a = actions.add("deliveries", "a webhook's newest deliveries, with every attempt")
    a.add_argument("name")
    a.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_webhook)


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


def _default_name(url: str) -> str:
    host = urlsplit(url).hostname or "webhook"
    return re.sub(r"[^A-Za-z0-9._-]", "-", host)[:63].strip("-._") or "webhook"


def cmd_webhook(args, settings: Settings) -> None:
    client = connect(args, settings)
    base = "/config/api/v1/webhooks"
    if args.action == "create":
        events = [e.strip() for e in args.events.split(",") if e.strip()]
        created = client.call("POST", base, {"name": args.name or _default_name(args.hook_url), "url": args.hook_url,
                                             "events": events})
        if args.json:
            print_json(created)
            return
        print(f"webhook {created['name']!r}: {created['url']} gets {', '.join(created['events'])}")
        print(f"secret (shown this once; check X-Bootfleet-Signature-256 with it): {created['secret']}")
    elif args.action == "list":
        data = client.call("GET", base)
        if args.json:
            print_json(data)
        elif data["items"]:
            print_table(data["items"], ["name", "url", "events", "active", "pending", "created_at"])
        else:
            print("no webhooks (bootfleet webhook create --url URL --events node.ready,node.failed)")
    elif args.action == "delete":
        confirm(args, f"delete webhook {args.name} and its deliveries?")
        show(args, client.call("DELETE", f"{base}/{args.name}"))
    else:
        data = client.call("GET", f"{base}/{args.name}/deliveries", params={"limit": args.limit})
        if args.json:
            print_json(data)
            return
        rows = []
        for d in data["items"]:
            last = d["attempt_log"][-1] if d["attempt_log"] else {}
            rows.append({**d, "last": last.get("error") or (f"HTTP {last['status']}" if last.get("status") else "-"),
                         "attempts": len(d["attempt_log"]), "created_at": d["created_at"][:19].replace("T", " ")})
        print_table(rows, ["id", "event", "state", "attempts", "last", "created_at", "next_attempt_at"]) if rows \
            else print("no deliveries yet")
