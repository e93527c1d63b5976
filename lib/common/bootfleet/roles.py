"""The roles an API token can have, and which role each may act as.

    admin      everything, API tokens included (the bootstrap BOOTFLEET_ADMIN_TOKEN is one)
    operator   profiles, deployments, nodes, DNS, cleanup: every change but tokens and webhooks
    viewer     read only: the API's GETs, the dashboard, events, the audit log
    metrics    the /<function>/metrics endpoints only (a Prometheus scraper)

Each role may do what the roles before it in ROLES may: a route that needs `viewer` is open to
viewer, operator and admin tokens; a route that needs `metrics` to every token.
"""

from __future__ import annotations

ROLES = ("metrics", "viewer", "operator", "admin")
READ_METHODS = frozenset({"GET", "HEAD"})


def allows(have: str, need: str) -> bool:
    """Whether a token with role `have` may call a route that needs role `need`."""
    return have in ROLES and ROLES.index(have) >= ROLES.index(need)


def default_role(methods) -> str:
    """The role an operator route needs unless it names one: viewer to read, operator to change."""
    return "viewer" if set(methods) <= READ_METHODS else "operator"


def check(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role: one of {', '.join(ROLES)}, got {role!r}")
    return role
