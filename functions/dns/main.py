"""dns: keeps node and deployment records right at the DNS provider.

Operators (admin token):
  POST /dns/reconcile            {"deployment": "<id or name>", "dry_run": true}   both optional
  GET  /dns/records?deployment=&limit=&offset=     the records bootfleet owns

A node's own records also follow it without a call here: status and the node API run
a reconcile scoped to the node when it becomes ready or its IP changes.
"""

import logging

from bootfleet.db import deployments, dns_records, get_database
from bootfleet.dns.plan import Scope
from bootfleet.dns.reconcile import reconcile_records
from bootfleet.errors import ConflictError
from bootfleet.log import setup_logging
from bootfleet.settings import get_settings
from bootfleet.web.api import Api, json_body, json_response, page, parse

setup_logging("dns")
log = logging.getLogger("bootfleet.dns")
api = Api("dns")


@api.route("/reconcile", methods=("POST",), admin=True)
def reconcile(request):
    from bootfleet.web import schemas  # pydantic: off the cold start of /dns/records

    body = parse(schemas.DnsReconcileIn, json_body(request) if request.get_data(cache=True) else {})
    if get_settings().dns_provider == "none":
        raise ConflictError("no DNS provider configured: set BOOTFLEET_DNS_PROVIDER to ibm or rfc2136")
    scope = Scope()
    if body.deployment:
        with get_database().transaction() as tx:
            scope.deployment_id = deployments.get(tx, body.deployment)["id"]
    result = reconcile_records(get_settings(), scope, dry_run=body.dry_run)  # a provider's refusal is a 502
    return json_response(result.view())


@api.route("/records", admin=True)
def records(request):
    limit, offset = page(request, default=500, maximum=5000)
    with get_database().transaction() as tx:
        deployment_id = None
        if request.args.get("deployment"):
            deployment_id = deployments.get(tx, request.args["deployment"])["id"]
        items, total = dns_records.listing(tx, deployment_id, limit, offset)
    return json_response({"items": items, "total": total, "limit": limit, "offset": offset})


def dns(request):
    return api(request)
