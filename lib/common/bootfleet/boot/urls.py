"""The public URLs bootfleet hands to nodes. One domain, one prefix per function."""

from __future__ import annotations


def node_urls(base: str, node_id: str, token: str) -> dict[str, str]:
    config = f"{base}/config/nodes/{node_id}"
    return {
        "ignition_url": f"{config}/ignition?token={token}",
        "user_data_url": f"{config}/user-data?token={token}",
        "meta_data_url": f"{config}/meta-data?token={token}",
        # cloud-init NoCloud appends "user-data" / "meta-data" to its seed URL,
        # so that one carries the token in its path.
        "cloud_init_url": f"{config}/t/{token}/",
        "status_url": f"{base}/status/nodes/{node_id}/progress?token={token}",
    }
