"""config: the operator API (web/operator.py), and each node's rendered Ignition / cloud-init
(boot/node_config.py).

Operators (Authorization: Bearer <admin token>):
  /config/api/v1/profiles[/<id or name>]      GET POST PATCH DELETE
  /config/api/v1/deployments[/<id or name>]   GET POST PATCH DELETE (provisions, scales, deprovisions servers)
  /config/api/v1/deployments/<id>/reconcile   POST  one provisioning pass now
  /config/api/v1/nodes[/<id>]                 GET POST PATCH DELETE
  /config/api/v1/nodes/<id>/reinstall         POST
  /config/api/v1/nodes/<id>/requirements/override   POST DELETE  (issue 22: web/inventory.py)
  /config/api/v1/nodes/import, nodes/<id>/script, unknown[/<mac>[/adopt]], doctor   (web/machines.py)
  /config/api/v1/whoami, tokens[/<name>], audit   the caller's role; scoped API tokens; the audit log (web/team.py)
  /config/api/v1/webhooks[/<name>[/deliveries]]   signed webhooks (web/hooks.py)
Nodes (their token, ?token=... or Authorization: Bearer ...):
  /config/nodes/<id>/ignition | user-data | meta-data
  /config/nodes/<id>/t/<token>/user-data | meta-data     (cloud-init NoCloud seed URL)
"""

import logging

from bootfleet.boot import node_config
from bootfleet.db import get_database
from bootfleet.log import setup_logging
from bootfleet.settings import get_settings
from bootfleet.web import hooks, inventory, machines, operator, team
from bootfleet.web.api import Api, base_url, text_response
from bootfleet.web.nodeauth import authenticate_node, presented_token

setup_logging("config")
log = logging.getLogger("bootfleet.config")
api = Api("config", cors=True)
api.include(operator.routes, prefix="/api/v1")  # the operator API: web/operator.py
api.include(machines.routes, prefix="/api/v1")  # import, script preview, unknown machines, doctor
api.include(team.routes, prefix="/api/v1")  # API tokens and roles, whoami, the audit log: web/team.py
api.include(hooks.routes, prefix="/api/v1")  # signed webhooks and their deliveries: web/hooks.py
api.include(inventory.routes, prefix="/api/v1")  # issue 22: override a node's requirements


@api.route("/nodes/<node_id>/<any(ignition, 'user-data', 'meta-data'):kind>")
@api.route("/nodes/<node_id>/t/<path_token>/<any('user-data', 'meta-data'):kind>")
def node_config_file(request, node_id, kind, path_token=None):
    with get_database().transaction() as tx:
        node = authenticate_node(tx, request, node_id, path_token, touch=False)  # seen with what it changes
        result = node_config.answer(tx, node, kind, base_url(request), presented_token(request, path_token),
                                    get_settings(), touch=True)
    if result.failure is not None:
        raise result.failure
    resp = text_response(result.body)
    resp.content_type = result.content_type
    return resp


def config(request):
    return api(request)
