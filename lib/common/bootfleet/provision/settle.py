"""After a scale-down or a delete: the deployment's servers are being deleted, and only a later
provisioning pass sees them gone and marks their nodes `deleted` (and a deleted deployment
`deleted`). settle_soon runs those passes from the process that answered, every second,
instead of leaving them to the next scheduled cleanup (issue 25)."""

from __future__ import annotations

import logging
import threading
import time

from bootfleet.provision.provisioner import reconcile
from bootfleet.settings import Settings

log = logging.getLogger(__name__)

# Deployments a follow-up is running for in this process (settle_soon), so a second request starts none.
_settling: set[str] = set()
_settling_lock = threading.Lock()


def unsettled(report: dict) -> bool:
    """Whether a pass left work that only a later pass can finish: servers still being deleted
    (their nodes become `deleted` when the provider says they are gone), or a deployment being
    deleted."""
    return bool(report.get("deleting")) or report.get("state") == "deleting"


def settle_soon(deployment_id: str, base_url: str | None, settings: Settings, every: float = 1.0,
                limit: float = 600.0) -> bool:
    """After a scale-down or a delete: passes over the deployment every `every` seconds, in a
    background thread of this process, until nothing is left to finish (or `limit` seconds), so
    it finishes without waiting for the next scheduled cleanup (which still catches whatever
    this process does not live to finish). False if one is already running here."""
    with _settling_lock:
        if deployment_id in _settling:
            return False
        _settling.add(deployment_id)

    def run() -> None:
        deadline = time.monotonic() + limit
        try:
            while time.monotonic() < deadline:
                time.sleep(every)
                try:
                    report = reconcile(deployment_id, base_url, settings=settings)
                except Exception:  # noqa: BLE001 - the scheduled cleanup tries again
                    log.exception("provisioning follow-up failed", extra={"deployment_id": deployment_id})
                    return
                if not report["busy"] and not unsettled(report):
                    return
        finally:
            with _settling_lock:
                _settling.discard(deployment_id)

    threading.Thread(target=run, name=f"settle-{deployment_id[:8]}", daemon=True).start()
    return True
