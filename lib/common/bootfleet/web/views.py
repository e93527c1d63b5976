"""How rows are shown through the API: stable field names, no internals."""

from __future__ import annotations

import datetime

NODE_FIELDS = (
    "id", "deployment_id", "profile_id", "hostname", "macs", "serial", "instance_id", "ip", "labels",
    "stage", "stage_changed_at", "stage_times", "token_version", "last_seen", "created_at", "updated_at",
)


def node_view(row: dict, timeouts: dict[str, int] | None = None) -> dict:
    """The node; with the stage timeouts, also `stuck`: in its stage past the stage's timeout
    (cleanup will fail it), in a deployment or not."""
    view = {k: row.get(k) for k in NODE_FIELDS}
    view["uuid"] = row.get("smbios_uuid")
    view["macs"] = list(row.get("macs") or [])
    # Whether the node's server carries an enrolment secret (never the secret or its hash).
    view["enrolled"] = bool(row.get("secret_hash"))
    view["discovered"] = bool(row.get("discovered"))
    # Issue 22: the last inventory and the requirement check (held nodes: why).
    view["inventory"], view["inventory_at"] = row.get("inventory"), row.get("inventory_at")
    view["requirements"] = {"failures": list(row.get("requirement_failures") or []),
                            "override": bool(row.get("requirements_override"))}
    view["install_progress"] = row.get("install_progress")  # an image write: bytes, total, percent, at
    if timeouts is not None:
        limit, since = timeouts.get(row.get("stage")), row.get("stage_changed_at")
        view["stuck"] = bool(limit is not None and since is not None
                             and (datetime.datetime.now(datetime.UTC) - since).total_seconds() > limit)
    return view


def profile_view(row: dict) -> dict:
    return dict(row)


def deployment_view(row: dict) -> dict:
    view = dict(row)
    view["count"] = view.pop("desired_count")
    return view
