"""The OpenAPI 3.1 document of all five functions, served at /config/api/v1/openapi.json.

Built, not written by hand: the paths and methods are every function's own routes (each
function module's `api.url_map`), request bodies are the pydantic models of web/schemas.py,
and the table below adds what a route map cannot say: query parameters, answers, who may
call. A route missing from the table is still in the document (with a generic answer), so
a new endpoint is never left out; tests/unit/test_openapi.py checks every one is described.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import re
from typing import Any

from bootfleet.roles import ROLES
from bootfleet.stages import ALL as STAGES
from bootfleet.web import schemas

FUNCTIONS = ("boot", "config", "status", "dns", "cleanup")
TEXT_FUNCTIONS = ("boot",)  # answer errors as text/plain
UUID = {"type": "string", "format": "uuid"}
TIME = {"type": "string", "format": "date-time"}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
OBJ = {"type": "object"}
ERROR = {"type": "object", "required": ["error", "status"],
         "properties": {"error": {"type": "string", "minLength": 1}, "status": {"type": "integer"}}}
PROFILE = {"type": "object", "required": ["id", "name", "kernel", "initrds", "args", "config_format"],
           "properties": {"id": UUID, "name": {"type": "string"}, "kernel": {"type": "string"},
                          "initrds": {"type": "array", "items": {"type": "string"}}, "args": {"type": "string"},
                          "config_format": {"enum": ["none", "ignition", "cloud-init"]},
                          "config_template": {"type": "string"}, "selectors": OBJ, "metadata": OBJ,
                          "require_secret": {"type": "boolean"},
                          "installed_after": {"enum": ["configuring", "installing", None]},
                          "created_at": TIME, "updated_at": TIME}}
DEPLOYMENT = {"type": "object", "required": ["id", "name", "profile_id", "provider", "count", "state"],
              "properties": {"id": UUID, "name": {"type": "string"}, "profile_id": UUID,
                             "provider": {"enum": ["none", "local", "ibm"]}, "dns_zone": {"type": ["string", "null"]},
                             "placement": OBJ, "spec": OBJ, "count": {"type": "integer", "minimum": 0},
                             "state": {"enum": ["active", "deleting", "deleted"]}, "provisioning": OBJ,
                             "require_secret": {"type": "boolean"},
                             "left_behind": {"type": "array", "items": OBJ},
                             "created_at": TIME, "updated_at": TIME, "deleted_at": NULLABLE_TIME}}
NODE = {"type": "object", "required": ["id", "macs", "stage", "labels"],
        "properties": {"id": UUID, "deployment_id": {"type": ["string", "null"]},
                       "profile_id": {"type": ["string", "null"]}, "hostname": {"type": ["string", "null"]},
                       "macs": {"type": "array",
                                "items": {"type": "string", "pattern": "^([0-9a-f]{2}:){5}[0-9a-f]{2}$"}},
                       "uuid": {"type": ["string", "null"]}, "serial": {"type": ["string", "null"]},
                       "ip": {"type": ["string", "null"]}, "labels": OBJ, "stage": {"enum": list(STAGES)},
                       "stage_times": OBJ, "token_version": {"type": "integer"}, "last_seen": NULLABLE_TIME,
                       "enrolled": {"type": "boolean"}, "discovered": {"type": "boolean"}, "stuck": {"type": "boolean"}}}
EVENT = {"type": "object", "required": ["id", "kind", "message", "source", "created_at"],
         "properties": {"id": {"type": "integer"}, "node_id": {"type": ["string", "null"]},
                        "deployment_id": {"type": ["string", "null"]}, "stage": {"type": ["string", "null"]},
                        "hostname": {"type": ["string", "null"], "description": "its node's hostname now"},
                        "kind": {"type": "string"}, "message": {"type": "string"}, "source": {"type": "string"},
                        "created_at": TIME}}

WHOAMI = {"type": "object", "required": ["address", "via", "boot_network", "looks_internal", "forwarded_for", "skipped"],
          "properties": {"address": {"type": ["string", "null"]}, "via": {"enum": ["gateway", "trusted proxy", "peer"]},
                         "boot_network": {"type": "boolean"}, "looks_internal": {"type": "boolean"},
                         "forwarded_for": {"type": "array", "items": {"type": "string"}},
                         "skipped": {"type": "array", "items": {"type": "string"}}}}


API_TOKEN = {"type": "object", "required": ["id", "name", "role", "created_at"],
             "properties": {"id": UUID, "name": {"type": "string"}, "role": {"enum": list(ROLES)},
                            "created_by": {"type": "string"}, "created_at": TIME, "expires_at": NULLABLE_TIME,
                            "last_used_at": NULLABLE_TIME, "revoked_at": NULLABLE_TIME,
                            "token": {"type": "string", "description": "only in the answer that created it"}}}
AUDIT = {"type": "object", "required": ["id", "at", "actor", "role", "action", "target", "changes", "outcome",
                                       "status", "request_id"],
         "properties": {"id": {"type": "integer"}, "at": TIME, "actor": {"type": "string"}, "role": {"type": "string"},
                        "action": {"type": "string"}, "target": {"type": "string"}, "changes": OBJ,
                        "outcome": {"type": "string"}, "status": {"type": "integer"},
                        "client_address": {"type": ["string", "null"]}, "request_id": {"type": "string"},
                        "method": {"type": "string"}, "path": {"type": "string"}}}
WEBHOOK = {"type": "object", "required": ["id", "name", "url", "events", "active"],
           "properties": {"id": UUID, "name": {"type": "string"}, "url": {"type": "string"},
                          "events": {"type": "array", "items": {"type": "string"}}, "active": {"type": "boolean"},
                          "pending": {"type": "integer"}, "created_at": TIME, "updated_at": TIME,
                          "secret": {"type": "string", "description": "only in the answer that created it"}}}
WHOAMI_TOKEN = {"type": "object", "required": ["name", "role", "bootstrap"],
                "properties": {"name": {"type": "string"}, "role": {"enum": list(ROLES)},
                               "bootstrap": {"type": "boolean"}}}


# A node's progress report, as functions/status checks it (no pydantic on status's cold start).
PROGRESS = {"type": "object", "required": ["stage"],
            "properties": {"stage": {"type": "string", "minLength": 1, "maxLength": 32},
                           "message": {"type": "string", "maxLength": 2000},
                           "bytes": {"type": "integer", "minimum": 0}, "total": {"type": "integer", "minimum": 0}}}


def listing(item: dict) -> dict:
    return {"type": "object", "required": ["items", "total", "limit", "offset"],
            "properties": {"items": {"type": "array", "items": item}, "total": {"type": "integer", "minimum": 0},
                           "limit": {"type": "integer"}, "offset": {"type": "integer"}}}


def q(name: str, schema: dict, description: str = "") -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


PAGE = [q("limit", {"type": "integer", "minimum": 1}, "page size"),
        q("offset", {"type": "integer", "minimum": 0}, "rows to skip")]
TOKEN = [q("token", {"type": "string"}, "the node's token (or Authorization: Bearer)")]
TEXT = {"text/plain": {"schema": {"type": "string"}}}

# (method, path) -> description. Who may call comes from the route itself (its role, roles.py); "role" here
# only for a route that checks its token itself (cleanup's /run). "body": a pydantic model (or a JSON schema);
# "ok": {status: schema or content}; "query": parameters.
DOCS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/boot/boot.ipxe"): {"summary": "The chainloader script", "ok": {200: TEXT}},
    ("GET", "/boot/ipxe"): {"summary": "A machine's iPXE script", "ok": {200: TEXT}, "query": [
        q("mac", {"type": "string"}), q("uuid", {"type": "string"}), q("serial", {"type": "string"}),
        q("hostname", {"type": "string"}), q("arch", {"type": "string"}), q("platform", {"type": "string"}),
        q("secret", {"type": "string"}, "the enrolment secret of a server bootfleet created")]},
    ("GET", "/boot/whoami"): {"summary": "The caller's address as bootfleet sees it, and the hops skipped",
                              "ok": {200: WHOAMI}},
    ("GET", "/config/api/v1/openapi.json"): {"summary": "This document", "ok": {200: OBJ}},
    ("GET", "/config/api/v1/profiles"): {"query": PAGE, "ok": {200: listing(PROFILE)}},
    ("POST", "/config/api/v1/profiles"): {"body": schemas.ProfileIn, "ok": {201: PROFILE}},
    ("GET", "/config/api/v1/profiles/{key}"): {"ok": {200: PROFILE}},
    ("PATCH", "/config/api/v1/profiles/{key}"): {"body": schemas.ProfileUpdate, "ok": {200: PROFILE}},
    ("PUT", "/config/api/v1/profiles/{key}"): {"body": schemas.ProfileUpdate, "ok": {200: PROFILE}},
    ("DELETE", "/config/api/v1/profiles/{key}"): {"ok": {204: None}, "query": [
        q("force", {"enum": ["true", "false"]}, "true: even though nodes boot it by their labels")]},
    ("GET", "/config/api/v1/deployments"): {"ok": {200: listing(DEPLOYMENT)}, "query": [
        *PAGE, q("state", {"enum": ["active", "deleting", "deleted"]})]},
    ("POST", "/config/api/v1/deployments"): {"body": schemas.DeploymentIn, "ok": {201: DEPLOYMENT}},
    ("GET", "/config/api/v1/deployments/{key}"): {"ok": {200: DEPLOYMENT}},
    ("PATCH", "/config/api/v1/deployments/{key}"): {"body": schemas.DeploymentUpdate,
                                                     "ok": {200: DEPLOYMENT}},
    ("PUT", "/config/api/v1/deployments/{key}"): {"body": schemas.DeploymentUpdate,
                                                   "ok": {200: DEPLOYMENT}},
    ("DELETE", "/config/api/v1/deployments/{key}"): {"ok": {200: DEPLOYMENT, 202: DEPLOYMENT},
                                                      "query": [q("force", {"enum": ["true", "false"]})]},
    ("POST", "/config/api/v1/deployments/{key}/reconcile"): {"ok": {200: OBJ}},
    ("GET", "/config/api/v1/nodes"): {"ok": {200: listing(NODE)}, "query": [
        *PAGE, q("stage", {"enum": list(STAGES)}), q("hostname", {"type": "string"}), q("mac", {"type": "string"}),
        q("deployment", {"type": "string"}, "a deployment, or - for the nodes outside every deployment"),
        q("label", {"type": "string"}, "key=value"), q("deleted", {"type": "string"}, "true: deleted nodes too"),
        q("stuck", {"enum": ["true", "false"]}, "true: only nodes in their stage past its timeout")]},
    ("POST", "/config/api/v1/nodes/import"): {"body": schemas.ImportIn, "ok": {201: OBJ}, "query": [
        q("update", {"enum": ["true", "false"]}, "true: a row whose MAC a node has updates it (upsert by MAC)")]},
    ("GET", "/config/api/v1/nodes/{key}/script"): {"ok": {200: OBJ},
                                                  "summary": "The script boot would answer the node now"},
    ("GET", "/config/api/v1/unknown"): {"query": PAGE, "ok": {200: listing(OBJ)},
                                        "summary": "Machines that tried to boot and no node has"},
    ("POST", "/config/api/v1/unknown/{mac}/adopt"): {"body": schemas.AdoptIn, "optional_body": True,
                                                     "ok": {201: NODE}},
    ("DELETE", "/config/api/v1/unknown/{mac}"): {"ok": {204: None}},
    ("GET", "/config/api/v1/doctor"): {"ok": {200: OBJ}, "summary": "What bootfleet doctor checks"},
    ("GET", "/status/standalone"): {"ok": {200: OBJ},
                                    "summary": "The nodes outside every deployment, as a deployment's progress"},
    ("POST", "/config/api/v1/nodes"): {"body": schemas.NodeIn, "ok": {201: NODE}},
    ("GET", "/config/api/v1/nodes/{node_id}"): {"ok": {200: NODE}},
    ("PATCH", "/config/api/v1/nodes/{node_id}"): {"body": schemas.NodeUpdate, "ok": {200: NODE}},
    ("PUT", "/config/api/v1/nodes/{node_id}"): {"body": schemas.NodeUpdate, "ok": {200: NODE}},
    ("DELETE", "/config/api/v1/nodes/{node_id}"): {"ok": {204: None, 202: NODE}},
    ("POST", "/config/api/v1/nodes/{node_id}/reinstall"): {"ok": {200: NODE}},
    ("GET", "/config/nodes/{node_id}/{kind}"): {"summary": "A node's rendered config", "query": TOKEN, "ok": {
        200: {"text/plain": {"schema": {"type": "string"}}, "text/cloud-config": {"schema": {"type": "string"}},
              "application/vnd.coreos.ignition+json": {"schema": OBJ}}}},
    ("GET", "/config/nodes/{node_id}/t/{path_token}/{kind}"): {"summary": "cloud-init's NoCloud seed", "ok": {
        200: {"text/plain": {"schema": {"type": "string"}}, "text/cloud-config": {"schema": {"type": "string"}}}}},
    ("POST", "/status/nodes/{node_id}/progress"): {"summary": "A node's progress report", "body": PROGRESS,
                                                   "query": [*TOKEN, q("stage", {"type": "string"})], "ok": {200: {
        "type": "object", "required": ["node", "stage", "changed"],
        "properties": {"node": UUID, "stage": {"enum": list(STAGES)}, "changed": {"type": "boolean"}}}}},
    ("GET", "/status/deployments/{key}"): {"ok": {200: {
        "type": "object", "required": ["deployment", "nodes", "counts", "percent", "done"],
        "properties": {"nodes": {"type": "integer"}, "percent": {"type": "number"}, "done": {"type": "boolean"}}}}},
    ("GET", "/status/nodes/{node_id}"): {"ok": {200: NODE}},
    ("GET", "/status/nodes/{node_id}/events"): {"query": [q("limit", {"type": "integer"})], "ok": {
        200: {"type": "object", "required": ["events"], "properties": {"events": {"type": "array", "items": EVENT}}}}},
    ("GET", "/status/events"): {"ok": {200: {
        "type": "object", "required": ["events", "next"],
        "properties": {"events": {"type": "array", "items": EVENT}, "next": {"type": "integer"}}}}, "query": [
        q("since", {"type": "string"}, "an event id or an ISO 8601 time"), q("deployment", {"type": "string"}),
        q("limit", {"type": "integer", "minimum": 1, "maximum": 5000})]},
    ("POST", "/dns/reconcile"): {"body": schemas.DnsReconcileIn, "optional_body": True,
                                 "ok": {200: OBJ}},
    ("GET", "/dns/records"): {"query": [*PAGE, q("deployment", {"type": "string"})],
                              "ok": {200: listing(OBJ)}},
    **{("GET", f"/{name}/metrics"): {"ok": {200: TEXT},
                                      "summary": "Prometheus metrics of this function (text exposition format)"}
       for name in FUNCTIONS},
    ("GET", "/config/api/v1/whoami"): {"summary": "The caller's token name and role", "ok": {200: WHOAMI_TOKEN}},
    ("GET", "/config/api/v1/tokens"): {"summary": "The live API tokens (never the tokens themselves)",
                                       "query": [q("revoked", {"enum": ["true", "false"]}, "revoked tokens too")],
                                       "ok": {200: {"type": "object", "required": ["items", "total"], "properties": {
                                           "items": {"type": "array", "items": API_TOKEN},
                                           "total": {"type": "integer"}}}}},
    ("POST", "/config/api/v1/tokens"): {"summary": "A new API token, shown once in `token`", "body": schemas.TokenIn,
                                        "ok": {201: API_TOKEN}},
    ("DELETE", "/config/api/v1/tokens/{key}"): {"summary": "Revoke a token (by name or id): it stops at once",
                                                "ok": {200: API_TOKEN}},
    ("GET", "/config/api/v1/audit"): {"summary": "The audit log, newest first", "ok": {200: listing(AUDIT)}, "query": [
        *PAGE, q("since", {"type": "string"}, "an entry id or an ISO 8601 time"),
        q("actor", {"type": "string"}, "a token's name"),
        q("target", {"type": "string"}, "a target (deployment/rack1), or every target under it (deployment)")]},
    ("GET", "/config/api/v1/webhooks"): {"summary": "Every webhook (never its secret)", "ok": {200: {
        "type": "object", "required": ["items", "total"], "properties": {"items": {"type": "array", "items": WEBHOOK},
                                                                         "total": {"type": "integer"}}}}},
    ("POST", "/config/api/v1/webhooks"): {"summary": "Register a webhook; the answer shows its secret once",
                                          "body": schemas.WebhookIn, "ok": {201: WEBHOOK}},
    ("GET", "/config/api/v1/webhooks/{key}"): {"ok": {200: WEBHOOK}},
    ("PATCH", "/config/api/v1/webhooks/{key}"): {"body": schemas.WebhookUpdate, "ok": {200: WEBHOOK}},
    ("PUT", "/config/api/v1/webhooks/{key}"): {"body": schemas.WebhookUpdate, "ok": {200: WEBHOOK}},
    ("DELETE", "/config/api/v1/webhooks/{key}"): {"ok": {204: None}},
    ("GET", "/config/api/v1/webhooks/{key}/deliveries"): {
        "summary": "The newest deliveries, each with every attempt", "query": [q("limit", {"type": "integer"})],
        "ok": {200: {"type": "object", "required": ["webhook", "items"],
                     "properties": {"webhook": {"type": "string"}, "items": {"type": "array", "items": OBJ}}}}},
    ("POST", "/cleanup/webhooks"): {"summary": "Send the webhook deliveries that are due (an operator token or"
                                               " the cron secret)", "ok": {200: OBJ}, "role": "operator"},
    ("POST", "/cleanup/run"): {"summary": "One cleanup run (an operator token or the cron secret)", "ok": {200: OBJ},
                               "query": [q("dry_run", {"enum": ["true", "false"]})], "role": "operator"},
}

# Issue 22: a node's inventory (bootfleet/inventory.py checks it; no pydantic on status's cold start).
_TEXT256 = {"type": "string", "maxLength": 256}
INVENTORY = {"type": "object", "required": ["cpus", "memory_mib"], "additionalProperties": False, "properties": {
    "cpus": {"type": "integer", "minimum": 1}, "memory_mib": {"type": "integer", "minimum": 1},
    "disks": {"type": "array", "maxItems": 256, "items": {
        "type": "object", "required": ["size_bytes"], "additionalProperties": False, "properties": {
            "name": _TEXT256, "size_bytes": {"type": "integer", "minimum": 0}, "model": _TEXT256,
            "serial": _TEXT256, "rotational": {"type": ["boolean", "null"]}, "by_path": _TEXT256}}},
    "nics": {"type": "array", "maxItems": 64, "items": {
        "type": "object", "required": ["mac"], "additionalProperties": False, "properties": {
            "name": _TEXT256, "mac": {"type": "string"}, "driver": _TEXT256,
            "speed_mbps": {"type": ["integer", "null"], "minimum": 0}, "link": {"type": ["boolean", "null"]}}}},
    "firmware": {"type": "object", "additionalProperties": False, "properties": {
        "mode": {"enum": ["bios", "uefi", None]}, "secure_boot": {"type": ["boolean", "null"]}}},
    "system": {"type": "object", "additionalProperties": False, "properties": {
        "vendor": _TEXT256, "product": _TEXT256, "serial": _TEXT256}}}}
CHECKED = {"type": "object", "required": ["passed", "reasons", "override", "stage"], "properties": {
    "node": UUID, "passed": {"type": "boolean"}, "reasons": {"type": "array", "items": {"type": "string"}},
    "override": {"type": "boolean"}, "stage": {"enum": list(STAGES)}}}
DOCS.update({
    ("POST", "/status/nodes/{node_id}/inventory"): {
        "summary": "A node's hardware inventory; answers whether its profile's requirements pass",
        "body": INVENTORY, "query": TOKEN, "ok": {200: CHECKED}},
    ("POST", "/config/api/v1/nodes/{node_id}/requirements/override"): {
        "summary": "Override one node's requirements (an event; a held node is released)",
        "body": {"type": "object", "additionalProperties": False,
                 "properties": {"reason": {"type": "string", "maxLength": 500}}},
        "optional_body": True, "ok": {200: NODE}},
    ("GET", "/status/nodes/{node_id}/image-plan"): {
        "summary": "An image profile's plan for the bootfleet agent: key=value lines (docs/images.md)",
        "query": TOKEN, "ok": {200: TEXT}},
    ("DELETE", "/config/api/v1/nodes/{node_id}/requirements/override"): {
        "summary": "Take one node's requirements override back (checked again)", "ok": {200: NODE}},
})


@functools.lru_cache(maxsize=None)
def _function_module(name: str):
    from bootfleet.web.router import function_source

    spec = importlib.util.spec_from_file_location(f"bootfleet_openapi_{name}", function_source(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _function_routes(name: str) -> list[tuple[str, str, list[tuple[str, list[str] | None]]]]:
    """(method, OpenAPI path, [(parameter, enum or None)]) for each route of functions/<name>/main.py."""
    return [(method, path, params) for method, path, params, _ in _function_routes_and_roles(name)]


def _function_routes_and_roles(name: str) -> list[tuple[str, str, list, str | None]]:
    """The same, with the role each route needs (None: no operator token; roles.py)."""
    module = _function_module(name)
    routes = []
    for rule in module.api.url_map.iter_rules():
        params, path = [], f"/{name}"
        for part in re.split(r"(<[^>]+>)", rule.rule):
            match = re.fullmatch(r"<(?:(\w+)(?:\((.*)\))?:)?(\w+)>", part)
            if not match:
                path += part
                continue
            converter, args, variable = match.groups()
            choices = re.findall(r"'([^']*)'|(\w[\w-]*)", args or "") if converter == "any" else []
            params.append((variable, [a or b for a, b in choices] or None))
            path += f"{{{variable}}}"
        role = module.api.handlers[rule.endpoint][1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((method, path.rstrip("/") or "/", params, role))
    return routes


def _body_schema(model, components: dict) -> dict:
    if isinstance(model, dict):  # a body a function checks itself (status's progress report)
        return copy.deepcopy(model)
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="validation")
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


@functools.lru_cache(maxsize=1)
def _document() -> dict:
    components: dict[str, Any] = {"Error": ERROR}
    paths: dict[str, dict] = {}
    for name in FUNCTIONS:
        for method, path, params, role in _function_routes_and_roles(name):
            doc = DOCS.get((method, path), {})
            role = role or doc.get("role")
            error_type = "text/plain" if name in TEXT_FUNCTIONS else "application/json"
            error = {"schema": {"type": "string"}} if name in TEXT_FUNCTIONS else {
                "schema": {"$ref": "#/components/schemas/Error"}}
            operation: dict[str, Any] = {
                "operationId": f"{method.lower()}_{re.sub(r'[^A-Za-z0-9]+', '_', path).strip('_')}",
                "summary": doc.get("summary", f"{method} {path}"),
                "tags": [name],
                "parameters": [
                    {"name": p, "in": "path", "required": True,
                     "schema": {"enum": choices} if choices else {"type": "string"}} for p, choices in params
                ] + copy.deepcopy(doc.get("query", [])),
                "responses": {"default": {"description": "an error, saying what was wrong",
                                          "content": {error_type: error}}},
            }
            for status, schema in doc.get("ok", {200: None}).items():
                answer: dict[str, Any] = {"description": "success"}
                if isinstance(schema, dict) and schema and all("/" in k for k in schema):
                    answer["content"] = copy.deepcopy(schema)
                elif schema is not None:
                    answer["content"] = {"application/json": {"schema": copy.deepcopy(schema)}}
                operation["responses"][str(status)] = answer
            if role:  # the role it needs, stated twice: for people, and for tools (x-bootfleet-role)
                operation["security"] = [{"bearer": []}]
                operation["x-bootfleet-role"] = role
                operation["description"] = (f"Needs a bearer token with the {role} role"
                                            f" or one above it ({' < '.join(ROLES)}).")
            if doc.get("body") is not None:
                operation["requestBody"] = {"required": not doc.get("optional_body"), "content": {
                    "application/json": {"schema": _body_schema(doc["body"], components)}}}
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "bootfleet", "version": "1",
                 "description": "All five functions behind one domain: boot, config, status, dns, cleanup."},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def document() -> dict:
    """The document (built once per process; a copy)."""
    return copy.deepcopy(_document())


def undescribed() -> list[str]:
    """Routes that the table above does not describe (should be none)."""
    return sorted(f"{m} {p}" for name in FUNCTIONS for m, p, _ in _function_routes(name) if (m, p) not in DOCS)
