"""What config answers a node that fetches its Ignition, cloud-init user-data or meta-data.

Beside boot's answer (answer.py): the node has already proved itself with its token;
its profile and deployment are read once (`nodes.boot_plan`), the profile's template is
rendered for it, and a node fetching its config moves to `configuring`.
"""

from __future__ import annotations

from dataclasses import dataclass

from bootfleet.boot.render import node_context, render_config
from bootfleet.db.connection import Transaction
from bootfleet.errors import NotFoundError, RenderError
from bootfleet.settings import Settings

# What each kind of request wants, and the URL to fetch instead when the profile renders the other.
WANTED = {"ignition": "ignition", "user-data": "cloud-init"}
FETCH = {"ignition": "ignition", "cloud-init": "user-data"}
# Stages at which fetching the config moves a node to `configuring`.
CONFIGURING_FROM = ("registered", "provisioning", "booting")


def images_for(settings: Settings | None, base: str):
    """`image_url` for templates: an object's URL in the configured images store (signed there
    when the store signs, as the kernel's); None: the plain base/images/ URL."""
    if settings is None:
        return None
    from bootfleet.boot.render import Url
    from bootfleet.providers.storage.choose import image_url
    from bootfleet.validation import check_image_ref

    # A Url: printed plain after a key in a cloud-config, as bootfleet's own URLs are (boot/render.py).
    return lambda key: Url(image_url(check_image_ref(str(key), "image_url()"), base, settings))


@dataclass
class ConfigAnswer:
    body: str = ""
    content_type: str = "text/plain; charset=utf-8"
    failure: RenderError | None = None  # raised after the transaction, so its event is kept (web/api logs it)


def answer(tx: Transaction, node: dict, kind: str, base: str, token: str | None,
           settings: Settings | None = None, touch: bool = False) -> ConfigAnswer:
    """The node's `kind` (ignition, user-data or meta-data) for an authenticated node. `settings`:
    the images store whose URLs `image_url('key')` gives (signed when it signs). `touch`: mark
    the node seen here, with the stage it moves to when it moves (authenticate_node(touch=False))."""
    from bootfleet.db import events, nodes  # here: boot imports this module for images_for alone

    node_id = node["id"]
    if kind == "meta-data":
        if touch:
            nodes.touch(tx, node_id)
        hostname = node["hostname"] or f"node-{node_id[:8]}"
        return ConfigAnswer(f"instance-id: {node_id}\nlocal-hostname: {hostname}\n")
    profile, deployment = nodes.boot_plan(tx, node)
    if profile is None:
        raise NotFoundError(f"node {node_id} has no profile")
    wanted = WANTED[kind]
    if profile["config_format"] != wanted:
        other = FETCH.get(profile["config_format"])
        hint = f"; fetch /config/nodes/{node_id}/{other}" if other else ""
        raise NotFoundError(f"profile {profile['name']!r} renders {profile['config_format']}, not {wanted}{hint}")
    try:
        body, content_type = render_config(profile, node_context(node, profile, deployment, base, token,
                                                                 images_for(settings, base)))
    except RenderError as e:
        # Nothing the node can do about it: it fails now, with the reason, rather than waiting in
        # `booting` until its stage times out (docs/installers.md, "Template errors").
        events.add(tx, "error", str(e), "config", node_id=node_id, deployment_id=node["deployment_id"])
        nodes.set_stage(tx, node_id, "failed", "config", f"its config cannot be rendered: {e}"[:2000], seen=touch)
        return ConfigAnswer(failure=RenderError(f"cannot render this node's config: {e}; the node is now failed"))
    if node["stage"] in CONFIGURING_FROM:
        nodes.set_stage(tx, node_id, "configuring", "config", f"{kind} fetched", seen=touch)
    elif touch:
        nodes.touch(tx, node_id)
    return ConfigAnswer(body, content_type)
