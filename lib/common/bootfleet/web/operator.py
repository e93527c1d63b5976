"""The operator API: profiles, deployments and nodes (`/config/api/v1/...`, admin token).

Handlers parse and check the request (web/schemas.py), call the queries in db/ in one
transaction, and answer with the views (web/views.py). A deployment with a provider gets
one provisioning pass right after a create, update or delete (bootfleet.provision).
The handlers import what only they need (web/schemas.py with pydantic, provisioning, DNS):
the config function's cold start, a node fetching its user-data, does without them.
"""

from __future__ import annotations

from bootfleet import stages, validation
from bootfleet.db import deployments, events, get_database, nodes, profiles
from bootfleet.errors import BadRequestError
from bootfleet.provision.placement import check_placement, check_provider
from bootfleet.settings import get_settings
from bootfleet.web.api import Routes, base_url, json_body, json_response, page, parse
from bootfleet.web.audit import note
from bootfleet.web.views import deployment_view, node_view, profile_view

routes = Routes()


def _changes(model, not_null=()) -> dict:
    """The fields the caller set; null only where the column may be empty."""
    changes = model.model_dump(exclude_unset=True)
    for name in not_null:
        if name in changes and changes[name] is None:
            raise BadRequestError(f"{name}: cannot be null")
    return changes


def _listing(items, total, limit, offset, view):
    return json_response({"items": [view(i) for i in items], "total": total, "limit": limit, "offset": offset})


@routes.route("/openapi.json")
def openapi_document(request):
    """The OpenAPI 3.1 document of every function's endpoints (web/openapi.py); no token needed."""
    from bootfleet.web.openapi import document

    return json_response(document())


# --- profiles ---------------------------------------------------------------


@routes.route("/profiles", admin=True)
def profile_list(request):
    limit, offset = page(request)
    with get_database().transaction() as tx:
        items, total = profiles.listing(tx, limit, offset)
    return _listing(items, total, limit, offset, profile_view)


@routes.route("/profiles", methods=("POST",), admin=True)
def profile_create(request):
    from bootfleet.web import schemas
    body = parse(schemas.ProfileIn, json_body(request))
    fields = body.model_dump()
    from bootfleet.boot.render import check_profile
    check_profile(fields)  # rendered for a sample node: a 400 naming what is missing, before a machine meets it
    with get_database().transaction() as tx:
        profile = profiles.create(tx, fields)
        events.add(tx, "profile", f"profile {profile['name']} created", "operator")
        note(request, f"profile/{profile['name']}", None, profile_view(profile), tx=tx)
    return json_response(_warned(profile), 201)


@routes.route("/profiles/<key>", admin=True)
def profile_get(request, key):
    with get_database().transaction() as tx:
        return json_response(profile_view(profiles.get(tx, key)))


@routes.route("/profiles/<key>", methods=("PATCH", "PUT"), admin=True)
def profile_update(request, key):
    from bootfleet.web import schemas
    body = parse(schemas.ProfileUpdate, json_body(request))
    # null is allowed where it ends something: installed_after; image (issue 22: an ordinary profile again)
    changes = _changes(body, not_null=set(schemas.ProfileUpdate.model_fields) - {"installed_after", "image"})
    with get_database().transaction() as tx:
        before = profiles.get(tx, key)
        note(request, f"profile/{before['name']}")
        from bootfleet.boot.render import check_profile
        check_profile({**before, **changes})
        profile = profiles.update(tx, key, changes)
        note(request, old=before, new=profile, tx=tx)
        events.add(tx, "profile", f"profile {profile['name']} updated: {', '.join(changes)}", "operator")
        if "requirements" in changes:  # issue 22: held nodes checked again against the fixed profile
            from bootfleet.boot.requirements import recheck_held
            recheck_held(tx, "operator")
    return json_response(_warned(profile))


def _warned(profile: dict) -> dict:
    """The profile, with `warnings` when it names images the storage does not hold (saved anyway:
    they may be uploaded next)."""
    from bootfleet.providers.storage.choose import missing_images

    view = profile_view(profile)
    missing = missing_images(get_settings(), [profile["kernel"], *profile["initrds"]], fresh=True)
    if missing:
        view["warnings"] = [f"image {key!r} is not in storage yet; nodes cannot boot this profile until it is"
                            f" (bootfleet images upload)" for key in missing]
    return view


@routes.route("/profiles/<key>", methods=("DELETE",), admin=True)
def profile_delete(request, key):
    """409 while deployments or nodes use it, and while nodes boot it by their labels unless
    ?force=true (those nodes then boot another profile their labels select, or none)."""
    force = request.args.get("force", "").lower() in ("1", "true", "yes")
    with get_database().transaction() as tx:
        profile = profiles.delete(tx, key, force=force)
        events.add(tx, "profile", f"profile {profile['name']} deleted", "operator")
        note(request, f"profile/{profile['name']}", profile_view(profile), {}, tx=tx)
    return json_response(None, 204)


# --- deployments ----------------------------------------------------------------


def _deployment_fields(tx, changes: dict) -> dict:
    if "profile" in changes:
        changes["profile_id"] = profiles.get(tx, changes.pop("profile"))["id"]
    if "count" in changes:
        changes["desired_count"] = changes.pop("count")
    return changes


@routes.route("/deployments", admin=True)
def deployment_list(request):
    limit, offset = page(request)
    state = request.args.get("state") or None
    if state and state not in ("active", "deleting", "deleted"):
        raise BadRequestError("state: one of active, deleting, deleted")
    with get_database().transaction() as tx:
        items, total = deployments.listing(tx, limit, offset, state)
    return _listing(items, total, limit, offset, deployment_view)


@routes.route("/deployments", methods=("POST",), admin=True)
def deployment_create(request):
    from bootfleet.web import schemas
    body = parse(schemas.DeploymentIn, json_body(request))
    check_placement(body.provider, body.name, body.placement)
    check_provider(body.provider, body.placement, get_settings())
    with get_database().transaction() as tx:
        deployment = deployments.create(tx, _deployment_fields(tx, body.model_dump()))
        events.add(
            tx, "deployment", f"deployment {deployment['name']} created", "operator", deployment_id=deployment["id"]
        )
        note(request, f"deployment/{deployment['name']}", None, deployment_view(deployment), tx=tx)
    return _provisioned(request, deployment, 201)


def _provisioned(request, deployment: dict, status: int):
    """The deployment, after one provisioning pass (servers created, scaled or deleted)."""
    from bootfleet.provision.provisioner import reconcile

    from bootfleet.provision.settle import settle_soon, unsettled

    view = deployment_view(deployment)
    if deployment["provider"] != "none":
        view["provisioning"] = reconcile(deployment["id"], base_url(request))
        view["state"] = view["provisioning"]["state"] or view["state"]
        if unsettled(view["provisioning"]):  # servers still going: finish soon, not at the next cleanup
            settle_soon(deployment["id"], base_url(request), get_settings())
    return json_response(view, status)


@routes.route("/deployments/<key>", admin=True)
def deployment_get(request, key):
    with get_database().transaction() as tx:
        return json_response(deployment_view(deployments.get(tx, key)))


@routes.route("/deployments/<key>", methods=("PATCH", "PUT"), admin=True)
def deployment_update(request, key):
    from bootfleet.web import schemas
    body = parse(schemas.DeploymentUpdate, json_body(request))
    changes = _changes(body, not_null=("profile", "count", "placement", "spec", "requirements"))
    with get_database().transaction() as tx:
        current = deployments.get(tx, key)
        note(request, f"deployment/{current['name']}", action="deployment.scale" if set(changes) == {"count"} else None)
        if "placement" in changes:
            check_placement(current["provider"], current["name"], changes["placement"])
        if {"placement", "count"} & set(changes):  # a scale the provider must carry out
            check_provider(current["provider"], changes.get("placement", current["placement"]), get_settings())
        deployment = deployments.update(tx, key, _deployment_fields(tx, changes))
        note(request, old=deployment_view(current), new=deployment_view(deployment), tx=tx)
        events.add(
            tx, "deployment", f"deployment {deployment['name']} updated: {', '.join(changes)}", "operator",
            deployment_id=deployment["id"],
        )
        if {"requirements", "profile"} & set(changes):  # issue 22: held nodes checked again
            from bootfleet.boot.requirements import recheck_held
            recheck_held(tx, "operator")
    return _provisioned(request, deployment, 200)


@routes.route("/deployments/<key>", methods=("DELETE",), admin=True)
def deployment_delete(request, key):
    """Mark for teardown (202; the provider deletes the servers), or with ?force=true delete it now
    (200), whatever its provider can do, naming the servers that may be left behind."""
    force = request.args.get("force", "false").lower()
    if force not in ("true", "false", "1", "0"):
        raise BadRequestError(f"force: true or false, got {force[:20]!r}")
    if force in ("true", "1"):
        with get_database().transaction() as tx:
            before = deployments.get(tx, key)
            deployment, left = deployments.force_delete(tx, key, "operator")
            note(request, f"deployment/{before['name']}", {"state": before["state"]}, {"state": deployment["state"]},
                 tx=tx)
        return json_response({**deployment_view(deployment), "left_behind": left})
    with get_database().transaction() as tx:
        before = deployments.get(tx, key)
        deployment = deployments.mark_deleted(tx, key, "operator")
        note(request, f"deployment/{before['name']}", {"state": before["state"]}, {"state": deployment["state"]}, tx=tx)
    return _provisioned(request, deployment, 202)


@routes.route("/deployments/<key>/reconcile", methods=("POST",), admin=True)
def deployment_reconcile(request, key):
    """One provisioning pass now: create what is missing, delete what is extra."""
    from bootfleet.provision.provisioner import reconcile
    with get_database().transaction() as tx:
        deployment = deployments.get(tx, key)
    note(request, f"deployment/{deployment['name']}")
    return json_response(reconcile(deployment["id"], base_url(request)))


# --- nodes -------------------------------------------------------------------------


def _node_fields(tx, changes: dict) -> dict:
    if "uuid" in changes:
        changes["smbios_uuid"] = changes.pop("uuid")
    if "deployment" in changes:
        ref = changes.pop("deployment")
        deployment = deployments.joinable(tx, ref) if ref else None  # held until the node is in (a delete waits)
        changes["deployment_id"] = deployment["id"] if deployment else None
    if "profile" in changes:
        ref = changes.pop("profile")
        changes["profile_id"] = profiles.get(tx, ref)["id"] if ref else None
    return changes


@routes.route("/nodes", admin=True)
def node_list(request):
    limit, offset = page(request)
    args = request.args
    filters = {"stage": args.get("stage") or None, "hostname": args.get("hostname") or None,
               "include_deleted": args.get("deleted", "").lower() in ("1", "true", "yes")}
    if filters["stage"] and filters["stage"] not in stages.ALL:
        raise BadRequestError(f"stage: one of {', '.join(stages.ALL)}, got {filters['stage'][:40]!r}")
    if args.get("mac"):
        filters["mac"] = validation.normalize_mac(args["mac"])
    labels = {}
    for item in args.getlist("label"):
        key, sep, value = item.partition("=")
        if not sep:
            raise BadRequestError(f"label: expected key=value, got {item[:60]!r}")
        labels[key] = value
    filters["labels"] = labels or None
    stuck = args.get("stuck", "").lower()
    if stuck not in ("", "true", "false", "1", "0"):
        raise BadRequestError(f"stuck: true or false, got {stuck[:20]!r}")
    if stuck in ("true", "1"):  # past their stage's timeout, as each node's `stuck` says
        filters["stuck"] = get_settings().stage_timeouts
    with get_database().transaction() as tx:
        if args.get("deployment") == "-":  # the nodes outside every deployment
            filters["outside"] = True
        elif args.get("deployment"):
            filters["deployment_id"] = deployments.get(tx, args["deployment"])["id"]
        items, total = nodes.listing(tx, limit, offset, **filters)
    timeouts = get_settings().stage_timeouts
    return _listing(items, total, limit, offset, lambda row: node_view(row, timeouts))


@routes.route("/nodes", methods=("POST",), admin=True)
def node_create(request):
    from bootfleet.web import schemas
    body = parse(schemas.NodeIn, json_body(request))
    if not body.macs and not body.uuid:
        raise BadRequestError("macs: give at least one MAC address (or a uuid) so boot can find the node")
    with get_database().transaction() as tx:
        nodes.check_hostname_free(tx, body.hostname)
        node = nodes.create(tx, _node_fields(tx, body.model_dump()), "operator")
        note(request, f"node/{node['id']}", None, node_view(node), tx=tx)
    return json_response(node_view(node), 201)


@routes.route("/nodes/<node_id>", admin=True)
def node_get(request, node_id):
    """By id, unique id prefix, MAC or hostname (nodes.resolve)."""
    with get_database().transaction() as tx:
        return json_response(node_view(nodes.resolve(tx, node_id), get_settings().stage_timeouts))


@routes.route("/nodes/<node_id>", methods=("PATCH", "PUT"), admin=True)
def node_update(request, node_id):
    from bootfleet.dns.reconcile import node_changed
    from bootfleet.web import schemas
    body = parse(schemas.NodeUpdate, json_body(request))
    changes = _changes(body, not_null=("macs", "labels", "add_labels", "remove_labels"))
    if "labels" in changes and ({"add_labels", "remove_labels"} & set(changes)):
        raise BadRequestError("labels: replaces them all; give it, or add_labels / remove_labels, not both")
    with get_database().transaction() as tx:
        before = node_view(nodes.get(tx, node_id))
        note(request, f"node/{before['id']}")
        nodes.check_hostname_free(tx, changes.get("hostname"), before["id"])
        node = nodes.update(tx, node_id, _node_fields(tx, changes))
        note(request, old=before, new=node_view(node), tx=tx)
        events.add(
            tx, "node", f"node updated: {', '.join(changes)}", "operator",
            node_id=node["id"], deployment_id=node["deployment_id"],
        )
        if {"ip", "hostname", "deployment"} & set(changes):
            node_changed(tx, get_settings(), node["id"], "operator")  # its DNS records follow
    return json_response(node_view(node))


@routes.route("/nodes/<node_id>", methods=("DELETE",), admin=True)
def node_delete(request, node_id):
    from bootfleet.dns.reconcile import node_changed
    with get_database().transaction() as tx:
        before = nodes.get(tx, node_id)
        node, gone = nodes.delete(tx, node_id, "operator")
        note(request, f"node/{before['id']}", {"stage": before["stage"]},
             {"stage": "deleted" if gone else node["stage"]}, tx=tx)
        node_changed(tx, get_settings(), node["id"], "operator")  # its DNS records go
    if gone:
        return json_response(None, 204)
    return json_response(node_view(node), 202)


@routes.route("/nodes/<node_id>/reinstall", methods=("POST",), admin=True)
def node_reinstall(request, node_id):
    from bootfleet.provision.fleet import reinstall_server

    with get_database().transaction() as tx:
        before = nodes.get(tx, node_id)
        node = nodes.reinstall(tx, node_id, "operator")
        note(request, f"node/{node['id']}", before, node, fields=("stage", "token_version"), tx=tx)
    view = node_view(node)
    if node["instance_id"]:  # its server boots the installer now (bare metal: reinitialized)
        view["reboot"] = reinstall_server(node, base_url(request))
    return json_response(view)
