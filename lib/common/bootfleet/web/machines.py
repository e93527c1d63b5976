"""More of the operator API (`/config/api/v1/...`, admin token): the bulk node import,
a node's boot script previewed, unknown machines and adopting them, and `doctor`.

    POST   /nodes/import              {"nodes": [{mac, hostname, ip, labels, profile, deployment}, ...]}
    GET    /nodes/<key>/script        the iPXE script boot would answer now; nothing changes
    GET    /unknown                   machines that tried to boot and are no node's
    POST   /unknown/<mac>/adopt       {"profile": ..., "deployment": ..., "hostname": ..., ...}: a node now
    DELETE /unknown/<mac>             forget one
    GET    /doctor                    the server's own checks (bootfleet doctor)
"""

from __future__ import annotations

from bootfleet import doctor, validation
from bootfleet.boot import ipxe
from bootfleet.boot.answer import config_for, script_for
from bootfleet.db import events, get_database, node_import, nodes, unknown
from bootfleet.errors import BadRequestError, ConflictError, NotFoundError, RenderError
from bootfleet.settings import get_settings
from bootfleet.web.api import Routes, base_url, json_body, json_response, page, parse, pydantic_message
from bootfleet.web.audit import note
from bootfleet.web.operator import _node_fields
from bootfleet.web.views import node_view

routes = Routes()
MOST_PROBLEMS = 20


def _import_rows(raw: list[dict]) -> list:
    """Every row checked (all problems, by row number from 1) before anything is written."""
    import pydantic

    from bootfleet.web.schemas import NodeIn

    checked, problems, macs, hostnames = [], [], {}, {}
    for number, row in enumerate(raw, 1):
        try:
            item = NodeIn.model_validate(row)
        except pydantic.ValidationError as e:
            problems.append(f"row {number}: {pydantic_message(e)}")
            continue
        if not item.macs and not item.uuid:
            problems.append(f"row {number}: give a mac (or a uuid) so boot can find the node")
        for mac in item.macs:
            if mac in macs:
                problems.append(f"row {number}: MAC {mac} is also in row {macs[mac]}")
            macs.setdefault(mac, number)
        if item.hostname and item.hostname in hostnames:
            problems.append(f"row {number}: hostname {item.hostname} is also in row {hostnames[item.hostname]}")
        hostnames.setdefault(item.hostname, number)
        checked.append(item)
    if problems:
        more = f" (and {len(problems) - MOST_PROBLEMS} more)" if len(problems) > MOST_PROBLEMS else ""
        raise BadRequestError("nothing imported: " + "; ".join(problems[:MOST_PROBLEMS]) + more)
    return checked


@routes.route("/nodes/import", methods=("POST",), admin=True)
def node_import_all(request):
    """All rows or none: checked first, then inserted in one transaction. With ?update=true a
    row whose MAC a node has already updates that node (the row's fields; its labels replace
    the node's) instead of being refused: an upsert by MAC."""
    from bootfleet.web.schemas import ImportIn  # pydantic stays off the config function's cold start

    upsert = request.args.get("update", "").lower() in ("1", "true", "yes")
    body = parse(ImportIn, json_body(request))
    if not body.nodes:
        raise BadRequestError("nodes: give at least one node")
    items = _import_rows(body.nodes)
    refs: dict[tuple, dict] = {}  # a deployment or profile named by many rows is looked up once
    with get_database().transaction() as tx:
        fields, numbers, updates, problems = [], [], [], []
        holders = node_import.mac_holders(tx, [mac for item in items for mac in item.macs]) if upsert else {}
        for number, item in enumerate(items, 1):
            data = item.model_dump(exclude_none=True)
            key = (data.get("deployment"), data.get("profile"))
            if key not in refs:
                try:
                    refs[key] = _node_fields(tx, {k: v for k, v in zip(("deployment", "profile"), key) if v})
                except (BadRequestError, NotFoundError) as e:  # a deployment or profile that is not there
                    raise BadRequestError(f"nothing imported: row {number}: {e.message}") from None
                except ConflictError as e:  # a deployment being deleted
                    raise ConflictError(f"nothing imported: row {number}: {e.message}") from None
            data.pop("deployment", None)
            data.pop("profile", None)
            if "uuid" in data:
                data["smbios_uuid"] = data.pop("uuid")
            found = {holders[mac] for mac in item.macs if mac in holders}
            if len(found) > 1:
                problems.append(f"row {number}: its MACs belong to {len(found)} different nodes")
                continue
            if found:
                node_id = found.pop()
                data.pop("macs", None)  # a MAC of the row that no node has yet is added below
                data["add_macs"] = [mac for mac in item.macs if mac not in holders]
                updates.append((number, node_id, {**data, **refs[key]}))
            else:
                fields.append({**data, **refs[key]})
                numbers.append(number)
        problems += node_import.conflicts(tx, fields, MOST_PROBLEMS)
        problems += node_import.hostname_conflicts(tx, list(zip(numbers, fields)), updates, MOST_PROBLEMS)
        if problems:
            raise BadRequestError("nothing imported: " + "; ".join(problems[:MOST_PROBLEMS]))
        ids = node_import.create_many(tx, fields, "operator") if fields else []
        for _, node_id, changes in updates:
            node = nodes.get(tx, node_id)
            changes["macs"] = node["macs"] + changes.pop("add_macs")
            nodes.update(tx, node_id, changes)
            events.add(tx, "node", f"node updated (bulk import): {', '.join(sorted(changes))}", "operator",
                       node_id=node_id, deployment_id=node["deployment_id"])
        events.add(tx, "node", f"{len(ids)} nodes imported" + (f", {len(updates)} updated" if upsert else ""),
                   "operator")
        note(request, "node", None, {"imported": len(ids), "updated": len(updates)}, tx=tx)
    answer = {"imported": len(ids), "ids": ids}
    if upsert:
        answer.update(updated=len(updates), updated_ids=[node_id for _, node_id, _ in updates])
    return json_response(answer, 201)


@routes.route("/nodes/<key>/script", role="operator")  # it holds a fresh node token
def node_script_preview(request, key):
    """Exactly what boot would answer this node now (a fresh token included); no stage moves,
    no event, no last_seen."""
    settings = get_settings()
    base = base_url(request)
    with get_database().transaction() as tx:
        node = nodes.resolve(tx, key)
        query = {"mac": (node["macs"] or [""])[0], "uuid": node.get("smbios_uuid") or ""}
        try:
            result = script_for(tx, settings, base, node, ipxe.script_url(base, query))
        except RenderError as e:  # what boot would answer with a 500: the profile needs fixing
            raise ConflictError(f"boot cannot render this node's script: {e.message}") from None
        try:
            config = config_for(tx, settings, base, node) if result.outcome == "install" else None
        except RenderError as e:  # what config would answer (and the node would fail with)
            raise ConflictError(f"config cannot render this node's config: {e.message}") from None
    return json_response({"node_id": node["id"], "stage": node["stage"], "outcome": result.outcome,
                          "profile": result.profile, "missing_images": result.missing_images,
                          "script": result.script, "config": config})


@routes.route("/unknown", admin=True)
def unknown_list(request):
    limit, offset = page(request)
    with get_database().transaction() as tx:
        items, total = unknown.listing(tx, limit, offset)
    return json_response({"items": items, "total": total, "limit": limit, "offset": offset})


@routes.route("/unknown/<mac>/adopt", methods=("POST",), admin=True)
def unknown_adopt(request, mac):
    """One step: the unknown machine becomes a node with this MAC (and a profile or deployment)."""
    mac = validation.normalize_mac(mac)
    from bootfleet.web.schemas import AdoptIn

    body = parse(AdoptIn, json_body(request) if request.get_data(cache=True) else {})
    if not body.profile and not body.deployment:
        raise BadRequestError("give a profile or a deployment for the node to boot with")
    with get_database().transaction() as tx:
        unknown.get(tx, mac)
        nodes.check_hostname_free(tx, body.hostname)
        fields = _node_fields(tx, {**body.model_dump(exclude_none=True), "macs": [mac]})
        node = nodes.create(tx, fields, "operator", f"node registered: adopted unknown machine {mac}")
        unknown.forget(tx, mac)
        note(request, f"unknown/{mac}", None, {"node": node["id"], **{k: v for k, v in fields.items() if v}}, tx=tx)
    return json_response(node_view(node), 201)


@routes.route("/unknown/<mac>", methods=("DELETE",), admin=True)
def unknown_forget(request, mac):
    mac = validation.normalize_mac(mac)
    with get_database().transaction() as tx:
        unknown.get(tx, mac)
        unknown.forget(tx, mac)
        note(request, f"unknown/{mac}", tx=tx)
    return json_response(None, 204)


@routes.route("/doctor", admin=True)
def doctor_checks(request):
    checks = doctor.server_checks(get_database(), get_settings())
    if all(c["ok"] for c in checks if c["name"] in ("database", "migrations")):
        checks += doctor.profile_render_checks(get_database(), get_settings(), base_url(request))
    return json_response({"checks": checks})
