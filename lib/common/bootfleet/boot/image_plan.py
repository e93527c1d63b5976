"""What the bootfleet agent writes (issue 22): the image plan of a node whose profile names an
image. Plain `key=value` lines, so the agent's busybox shell reads it with `read`:

    url=http://10.0.2.100/images/os/disk.raw.xz      (a presigned URL with S3: never through the functions)
    sha256=<of the file as stored>
    size_bytes=<the raw image>
    compression=none|gz|xz|zstd
    disk_rule=largest|smallest|serial|path
    disk_serial=   disk_path=
    seed_url=... (NoCloud seedfrom)   user_data_url=...   meta_data_url=...   status_url=...   inventory_url=...
"""

from __future__ import annotations

from bootfleet import inventory, stages
from bootfleet.boot.urls import node_urls
from bootfleet.db import nodes
from bootfleet.db.connection import Transaction
from bootfleet.errors import ConflictError, NotFoundError
from bootfleet.providers.storage.choose import image_url
from bootfleet.settings import Settings

SUFFIXES = {".gz": "gz", ".xz": "xz", ".zst": "zstd", ".zstd": "zstd"}


def compression(image: dict) -> str:
    if image.get("compression"):
        return image["compression"]
    key = image["key"].split("?", 1)[0].lower()
    return next((kind for suffix, kind in SUFFIXES.items() if key.endswith(suffix)), "none")


def plan(tx: Transaction, settings: Settings, node: dict, base: str, token: str) -> str:
    """The node's plan; 404 when its profile names no image, 409 while it is held."""
    profile, deployment = nodes.boot_plan(tx, node)
    image = (profile or {}).get("image")
    if not image:
        raise NotFoundError(f"profile {(profile or {}).get('name')!r} names no image to install"
                            " (an image profile has an `image`: docs/images.md)")
    reasons = inventory.failures(inventory.combined(profile, deployment), node["inventory"])
    if node["stage"] == stages.HELD or (reasons and not node["requirements_override"]):
        raise ConflictError("node is held: its inventory fails its profile's requirements: " + "; ".join(reasons))
    urls = node_urls(base, node["id"], token)
    disk = image.get("disk") or {}
    lines = {
        "url": image_url(image["key"], base, settings),
        "sha256": image["sha256"],
        "size_bytes": image["size_bytes"],
        "compression": compression(image),
        "disk_rule": disk.get("rule") or "largest",
        "disk_serial": disk.get("serial") or "",
        "disk_path": disk.get("path") or "",
        "seed_url": urls["cloud_init_url"],
        "user_data_url": urls["user_data_url"],
        "meta_data_url": urls["meta_data_url"],
        "status_url": urls["status_url"],
        "inventory_url": f"{base}/status/nodes/{node['id']}/inventory?token={token}",
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())
