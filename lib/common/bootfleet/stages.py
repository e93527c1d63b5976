"""Node stages and the rules for moving between them."""

from __future__ import annotations

from bootfleet.errors import StageError

# The install path, in order. A node only moves forward along it.
FORWARD = ("registered", "provisioning", "booting", "configuring", "installing", "rebooting", "ready")
# Reachable from any stage.
TERMINAL = ("failed", "deprovisioning", "deleted")
# Held (issue 22): the node's inventory fails its profile's requirements; it installs nothing
# until they pass (a new inventory, a fixed profile) or an operator overrides them.
HELD = "held"
ALL = FORWARD + TERMINAL + (HELD,)

# What a node may report about itself through status.
REPORTABLE = ("booting", "configuring", "installing", "rebooting", "ready", "failed")

# Stages in which boot answers "boot from the local disk".
LOCAL_BOOT = ("rebooting", "ready")
# Stages of an open install: a boot answer opened it (the node went to `booting`), and
# its token reads the config and reports progress until `ready`, `failed`, a reinstall
# or the install's time limit closes it.
INSTALL_OPEN = ("booting", "configuring", "installing", "rebooting", HELD)
# Stages from which a boot answer (with proof) opens a new install: the node goes to `booting`.
OPENS_INSTALL = ("registered", "provisioning", "configuring", "installing", HELD)
# Stages in which a node is done, one way or the other.
DONE = ("ready", "failed", "deprovisioning", "deleted")


def rank(stage: str) -> int:
    return FORWARD.index(stage) if stage in FORWARD else len(FORWARD)


def check_report(current: str, reported: str) -> bool:
    """Whether a node's report moves it; raises StageError when it is refused.

    Returns False for a repeat of the current stage (a no-op), True to move.
    """
    if reported not in ALL:
        raise StageError(f"unknown stage {reported!r}; stages are: {', '.join(ALL)}", 400)
    if reported not in REPORTABLE:
        raise StageError(
            f"stage {reported!r} cannot be reported by a node; it may report: {', '.join(REPORTABLE)}", 400
        )
    if reported == current:
        return False
    if current in TERMINAL:
        raise StageError(f"node is {current}; an operator must reinstall it before it reports again", 409)
    if reported == "failed":
        return True
    if current == HELD:
        raise StageError("node is held: its inventory fails its profile's requirements (see the node's"
                         " requirements); it installs nothing until they pass or an operator overrides them", 409)
    if rank(reported) < rank(current):
        raise StageError(f"node is already {current}; a report of the earlier stage {reported!r} is refused", 409)
    return True
