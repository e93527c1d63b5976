"""How rows are shown through the API: stable field names, no internals."""

from __future__ import annotations

NODE_FIELDS = (
    "id", "deployment_id", "profile_id", "hostname", "macs", "serial", "instance_id", "ip", "labels",
    "stage", "stage_changed_at", "stage_times", "token_version", "last_seen", "created_at", "updated_at",
)


def node_view(row: dict) -> dict:
    view = {k: row.get(k) for k in NODE_FIELDS}
    view["uuid"] = row.get("smbios_uuid")
    view["macs"] = list(row.get("macs") or [])
    # Whether the node's server carries an enrolment secret (never the secret or its hash).
    view["enrolled"] = bool(row.get("secret_hash"))
    view["discovered"] = bool(row.get("discovered"))
    return view


def profile_view(row: dict) -> dict:
    return dict(row)


def deployment_view(row: dict) -> dict:
    view = dict(row)
    view["count"] = view.pop("desired_count")
    return view
