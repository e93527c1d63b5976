"""The operator API for issue 22: override one node's requirements (or take it back).

  POST   /config/api/v1/nodes/<node>/requirements/override   {"reason": "..."} (optional)
  DELETE /config/api/v1/nodes/<node>/requirements/override
"""

from __future__ import annotations

from bootfleet.boot import requirements
from bootfleet.db import get_database, nodes
from bootfleet.errors import BadRequestError
from bootfleet.web.api import Routes, json_body, json_response
from bootfleet.web.audit import note
from bootfleet.web.views import node_view

routes = Routes()


def _reason(request) -> str:
    if not request.get_data():
        return ""
    body = json_body(request)
    unknown = sorted(set(body) - {"reason"})
    if unknown:
        raise BadRequestError(f"{unknown[0][:40]}: unknown field; the only field is reason")
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 500:
        raise BadRequestError("reason: text of at most 500 characters")
    return reason


@routes.route("/nodes/<node_id>/requirements/override", methods=("POST", "DELETE"), admin=True)
def node_override(request, node_id):
    on = request.method == "POST"
    reason = _reason(request) if on else ""
    with get_database().transaction() as tx:
        before = nodes.resolve(tx, node_id)
        note(request, f"node/{before['id']}")
        checked = requirements.override(tx, before["id"], on, reason, "operator")
        node = nodes.get(tx, before["id"])
        note(request, old={"requirements_override": before["requirements_override"], "stage": before["stage"]},
             new={"requirements_override": on, "stage": node["stage"]}, tx=tx)
    return json_response({**node_view(node), "check": checked})
