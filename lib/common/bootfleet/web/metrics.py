"""`GET /<function>/metrics` (admin token) and the request timing around every Api call.

Every function's Api registers `metrics_endpoint` at /metrics and wraps its `__call__` in
`timed`: requests are counted by function, endpoint (the handler's name, `unmatched` for a
path no handler has) and status, and timed by function and endpoint.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import flask

from bootfleet import metrics
from bootfleet.db import get_database, stats
from bootfleet.settings import get_settings

HANDLER = "bootfleet.handler"  # request.environ key: the name of the handler that answered


def timed(call: Callable) -> Callable:
    @functools.wraps(call)
    def answer(api, request: flask.Request) -> flask.Response:
        started = time.perf_counter()
        response = call(api, request)
        metrics.request_done(api.service, request.environ.get(HANDLER, "unmatched"), response.status_code,
                             time.perf_counter() - started)
        return response

    return answer


def _node_stages() -> list[dict]:
    with get_database().transaction() as tx:
        return stats.node_stages(tx, get_settings().stage_timeouts)


def metrics_endpoint(request: flask.Request) -> flask.Response:
    body, content_type = metrics.render(get_settings(), [metrics.NodeStages(_node_stages)])
    return flask.Response(body, status=200, content_type=content_type)
