"""A local fake of IBM Cloud DNS Services (resource records) and the IAM token endpoint,
on 127.0.0.1, for the real SDK (`ibm-cloud-networking-services` `DnsSvcsV1`) to talk to.

What it keeps faithful to the real service (cloud.ibm.com/apidocs/dns-svcs, the SDK's
own unit tests, docs "Managing DNS records"):
- paths: `/v1/instances/{instance_id}/dnszones/{dnszone_id}/resource_records[/{record_id}]`;
  GET (list, `offset`/`limit` paging, `type` and `name` filters), POST (200, as the API
  reference says: not 201), PUT, DELETE (204);
- the list body: `resource_records`, `offset`, `limit`, `count`, `total_count`,
  `first`/`last`/`next`/`previous` `{"href"}`;
- a record: `id` like `A:<uuid>`, `created_on`, `modified_on`, `name` (fully qualified:
  the zone is appended to a relative name), `type`, `ttl` (default 900, 60..43200), `rdata`:
  A/AAAA `{"ip"}`, CNAME `{"cname"}`, PTR `{"ptrdname"}`, TXT `{"text"}`;
- the PTR rule: a PTR is created with the IP as its `name` (listed as
  `d.c.b.a.in-addr.arpa`, or with `ptr_names="ip"` under the IP itself, as the service
  may; the `name` filter matches the listed form) and needs an A/AAAA record with that IP whose name is the
  `ptrdname`, not already linked to another PTR; an A/AAAA linked to a PTR cannot be
  deleted or re-addressed until the PTR is gone;
- the same record twice is a 409; unknown instance, zone or record a 404; bad input a 400;
  errors carry `{"errors": [{"code", "message"}], "trace", "status_code"}`;
- IAM: `POST /identity/token` (`grant_type=urn:ibm:params:oauth:grant-type:apikey`) answers
  a JWT; with `require_auth` the DNS paths refuse calls without a token it issued (401).

Counters: `reads` (GETs), `writes` (POST/PUT/DELETE) and `calls` per method. Faults
(tests/fakes/ibm_common.py): at construction (`faults=[...]`), `inject(...)`,
`fail(method, status, times=1)` for any DNS path, or over HTTP (`POST /_fake/faults`);
with `apply=True` the request takes effect first and only its answer is the fault (a
5xx, or with `timeout` one too late for the client): a create whose answer was lost.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import threading
import uuid
from collections import Counter
from urllib.parse import parse_qs, urlencode

from fakes.ibm_common import CONTROL, Fault, Faults, Iam, error_body, fault_response, json_response
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

API_KEY = "fake-dns-api-key"
DEFAULT_LIMIT = 200
MAX_LIMIT = 5000
PATH = re.compile(r"^/v1/instances/(?P<instance>[^/]+)/dnszones/(?P<zone>[^/]+)/resource_records(?:/(?P<record>[^/]+))?$")
TYPES = ("A", "AAAA", "CNAME", "MX", "SRV", "TXT", "PTR")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):  # no access log on the test output
        pass


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeDnsServices:
    """One DNS Services instance with zones {zone_id: zone name}."""

    def __init__(self, instance_id: str, zones: dict[str, str], require_auth: bool = False,
                 faults: list[dict] | None = None, ptr_names: str = "reverse"):
        if ptr_names not in ("reverse", "ip"):
            raise ValueError("ptr_names is reverse or ip")
        self.ptr_names = ptr_names
        self.instance_id = instance_id
        self.zones = dict(zones)
        self.records: dict[str, dict[str, dict]] = {zone_id: {} for zone_id in zones}
        self.by_name: dict[str, dict[str, list[dict]]] = {zone_id: {} for zone_id in zones}  # an index
        self.require_auth = require_auth
        self.iam = Iam(API_KEY)
        self.calls: Counter = Counter()
        self.faults = Faults(faults)
        self.lock = threading.Lock()
        self._server = None
        self.url = ""

    # lifecycle

    def start(self) -> "FakeDnsServices":
        self._server = make_server("127.0.0.1", 0, self.wsgi, threaded=True, request_handler=_Quiet)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()

    @property
    def service_url(self) -> str:
        return self.url + "/v1"

    @property
    def reads(self) -> int:
        return self.calls["GET"]

    @property
    def writes(self) -> int:
        return self.calls["POST"] + self.calls["PUT"] + self.calls["DELETE"]

    def reset_counts(self) -> None:
        self.calls.clear()

    @property
    def tokens(self) -> set[str]:
        return self.iam.tokens

    def fail(self, method: str, status: int = 500, times: int = 1) -> Fault:
        return self.inject(method, r"^/v1/instances/", status=status, times=times)

    def inject(self, method: str, path: str, **fault) -> Fault:
        """After `skip` matching requests, the next `times` get this fault (see ibm_common)."""
        return self.faults.add(method=method, path=path, **fault)

    def add(self, zone_id: str, rtype: str, name: str, rdata: dict, ttl: int = 900) -> dict:
        """A record made by hand (not through the API): what an operator clicked in the console."""
        with self.lock:
            return self._create(zone_id, {"type": rtype, "name": name, "rdata": rdata, "ttl": ttl})

    def all(self, zone_id: str) -> list[dict]:
        return list(self.records[zone_id].values())

    def handle_list_names(self) -> list[str]:
        """The names the API lists, in every zone (PTRs in the `ptr_names` form)."""
        return [self._view(r)["name"] for zone in self.records.values() for r in zone.values()]

    # HTTP

    def wsgi(self, environ, start_response):
        request = Request(environ)
        if request.path == CONTROL:
            return self.faults.control(request)(environ, start_response)
        try:
            response = self.handle(request)
        except ApiError as e:
            response = self._error(e.status, e.code, e.message)
        return response(environ, start_response)

    def _json(self, body, status: int = 200) -> Response:
        return json_response(body, status)

    def _error(self, status: int, code: str, message: str) -> Response:
        return json_response(error_body(status, code, message), status)

    def handle(self, request: Request) -> Response:
        fault = self.faults.match(request.method, request.path)
        if fault and fault.apply:  # the request takes effect, then its answer is lost
            try:
                self._handle(request)
            except ApiError:
                pass
        elif fault and request.path.startswith("/v1/"):
            with self.lock:
                self.calls[request.method] += 1
        if fault:
            return fault_response(fault)
        return self._handle(request)

    def _handle(self, request: Request) -> Response:
        if request.path == "/identity/token" and request.method == "POST":
            return self.iam.token(request)
        match = PATH.match(request.path)
        if not match:
            raise ApiError(404, "not_found", f"no such path: {request.path}")
        if self.require_auth and not self.iam.valid(request):
            raise ApiError(401, "unauthorized", "a valid IAM access token is required")
        with self.lock:
            self.calls[request.method] += 1
            if match["instance"] != self.instance_id:
                raise ApiError(404, "not_found", f"instance {match['instance']} not found")
            zone_id = match["zone"]
            if zone_id not in self.zones:
                raise ApiError(404, "not_found", f"DNS zone {zone_id} not found")
            record_id = match["record"]
            if record_id is None and request.method == "GET":
                return self._list(request, zone_id)
            if record_id is None and request.method == "POST":
                return self._json(self._view(self._create(zone_id, self._body(request))))
            if record_id is None:
                raise ApiError(405, "method_not_allowed", f"{request.method} is not allowed here")
            record = self.records[zone_id].get(record_id)
            if record is None:
                raise ApiError(404, "not_found", f"resource record {record_id} not found")
            if request.method == "GET":
                return self._json(self._view(record))
            if request.method == "PUT":
                return self._json(self._view(self._update(zone_id, record, self._body(request))))
            if request.method == "DELETE":
                self._delete(zone_id, record)
                return Response(status=204)
            raise ApiError(405, "method_not_allowed", f"{request.method} is not allowed here")

    def _view(self, record: dict) -> dict:
        """A record as the API lists it: a PTR under its reverse name, or its IP."""
        if record["type"] == "PTR" and self.ptr_names == "ip":
            return {**record, "name": record["ip"]}
        return {k: v for k, v in record.items() if k != "ip"}

    @staticmethod
    def _body(request: Request) -> dict:
        try:
            body = json.loads(request.get_data() or b"{}")
        except ValueError:
            raise ApiError(400, "invalid_json", "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_json", "the request body must be a JSON object")
        return body

    # records

    def _list(self, request: Request, zone_id: str) -> Response:
        args = request.args
        try:
            offset = int(args.get("offset", 0))
            limit = int(args.get("limit", DEFAULT_LIMIT))
        except ValueError:
            raise ApiError(400, "invalid_request", "offset and limit must be integers") from None
        if offset < 0 or not 1 <= limit <= MAX_LIMIT:
            raise ApiError(400, "invalid_request", f"offset must be >= 0 and limit 1..{MAX_LIMIT}")
        items = [self._view(r) for r in self.records[zone_id].values()]
        if args.get("type"):
            items = [r for r in items if r["type"] == args["type"].upper()]
        if args.get("name"):
            wanted = {args["name"].lower().rstrip("."), self._full_name(zone_id, args["name"], "A")}
            items = [r for r in items if r["name"] in wanted]  # (the order of creation, as unfiltered)
        total = len(items)
        page = items[offset:offset + limit]
        base = f"https://api.dns-svcs.cloud.ibm.com/v1/instances/{self.instance_id}/dnszones/{zone_id}/resource_records"

        def href(at: int) -> dict:
            return {"href": f"{base}?{urlencode({'offset': at, 'limit': limit})}"}

        body = {"resource_records": page, "offset": offset, "limit": limit, "count": len(page), "total_count": total,
                "first": href(0), "last": href(max(0, (total - 1) // limit * limit))}
        if offset + limit < total:
            body["next"] = href(offset + limit)
        if offset > 0:
            body["previous"] = href(max(0, offset - limit))
        return self._json(body)

    def _full_name(self, zone_id: str, name: str, rtype: str) -> str:
        name = name.lower().rstrip(".")
        zone = self.zones[zone_id]
        if rtype == "PTR" or name.endswith(".arpa") or name == zone or name.endswith("." + zone):
            return name
        return f"{name}.{zone}"

    def _check(self, zone_id: str, rtype: str, name: str, rdata, ttl) -> tuple[str, dict, int]:
        if rtype not in TYPES:
            raise ApiError(400, "invalid_request", f"type must be one of {', '.join(TYPES)}")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "invalid_request", "name is required")
        if not isinstance(rdata, dict):
            raise ApiError(400, "invalid_request", "rdata is required")
        if ttl is None:
            ttl = 900
        if not isinstance(ttl, int) or not 60 <= ttl <= 43200:
            raise ApiError(400, "invalid_request", "ttl must be between 60 and 43200 seconds")
        want = {"A": {"ip"}, "AAAA": {"ip"}, "CNAME": {"cname"}, "PTR": {"ptrdname"}, "TXT": {"text"},
                "MX": {"exchange", "preference"}, "SRV": {"priority", "weight", "port", "target"}}[rtype]
        if set(rdata) != want:
            raise ApiError(400, "invalid_request", f"rdata for {rtype} takes {', '.join(sorted(want))}")
        if rtype in ("A", "AAAA"):
            try:
                ip = ipaddress.ip_address(rdata["ip"])
            except (ValueError, TypeError):
                raise ApiError(400, "invalid_request", f"rdata.ip {rdata['ip']!r} is not an IP address") from None
            if (ip.version == 6) != (rtype == "AAAA"):
                raise ApiError(400, "invalid_request", f"rdata.ip {rdata['ip']} does not fit a {rtype} record")
            rdata = {"ip": str(ip)}
        return self._full_name(zone_id, name, rtype), rdata, ttl

    def _linked_ptr(self, zone_id: str, record: dict) -> dict | None:
        if record["type"] not in ("A", "AAAA"):
            return None
        reverse = ipaddress.ip_address(record["rdata"]["ip"]).reverse_pointer
        for other in self.by_name[zone_id].get(reverse, []):
            if other["type"] == "PTR" and other["rdata"]["ptrdname"] == record["name"]:
                return other
        return None

    def _create(self, zone_id: str, body: dict) -> dict:
        rtype = str(body.get("type") or "").upper()
        name, rdata, ttl = self._check(zone_id, rtype, body.get("name"), body.get("rdata"), body.get("ttl"))
        if rtype == "PTR":
            try:
                ip = ipaddress.ip_address(body["name"])
            except ValueError:
                raise ApiError(400, "invalid_request", "a PTR record's name is the IP address it maps") from None
            name = ip.reverse_pointer
            target = str(rdata["ptrdname"]).lower().rstrip(".")
            owner = [r for r in self.by_name[zone_id].get(target, [])
                     if r["type"] in ("A", "AAAA") and r["rdata"]["ip"] == str(ip)]
            if not owner:
                raise ApiError(400, "invalid_request",
                               f"a PTR record needs an existing A or AAAA record {target} with IP {ip}")
            if self._linked_ptr(zone_id, owner[0]) or any(
                    r["type"] == "PTR" for r in self.by_name[zone_id].get(name, [])):
                raise ApiError(409, "conflict", f"{ip} is already associated with a PTR record")
            rdata = {"ptrdname": target}
        for other in self.by_name[zone_id].get(name, []):
            if other["type"] == rtype and other["rdata"] == rdata:
                raise ApiError(409, "conflict", "the same resource record already exists")
            if "CNAME" in (rtype, other["type"]):
                raise ApiError(409, "conflict", f"{name} already has records; a CNAME cannot share its name")
        stamp = _now()
        record = {"id": f"{rtype}:{uuid.uuid4()}", "created_on": stamp, "modified_on": stamp, "name": name,
                  "type": rtype, "ttl": ttl, "rdata": rdata}
        if rtype == "PTR":
            record["ip"] = str(ip)  # kept for the listing form ptr_names="ip"
        self.records[zone_id][record["id"]] = record
        self.by_name[zone_id].setdefault(name, []).append(record)
        return record

    def _update(self, zone_id: str, record: dict, body: dict) -> dict:
        if record["type"] == "PTR" and set(body) - {"ttl"}:
            raise ApiError(400, "invalid_request", "only the ttl of a PTR record can be updated")
        name, rdata, ttl = self._check(zone_id, record["type"], body.get("name", record["name"]),
                                       body.get("rdata", record["rdata"]), body.get("ttl", record["ttl"]))
        if (name != record["name"] or rdata != record["rdata"]) and self._linked_ptr(zone_id, record):
            raise ApiError(400, "invalid_request", "the record is associated with a PTR record; delete the PTR first")
        self.by_name[zone_id][record["name"]].remove(record)
        record.update(name=name, rdata=rdata, ttl=ttl, modified_on=_now())
        self.by_name[zone_id].setdefault(name, []).append(record)
        return record

    def _delete(self, zone_id: str, record: dict) -> None:
        if self._linked_ptr(zone_id, record):
            raise ApiError(400, "invalid_request", "the record is associated with a PTR record; delete the PTR first")
        del self.records[zone_id][record["id"]]
        self.by_name[zone_id][record["name"]].remove(record)


def parse_query(url: str) -> dict:
    return {k: v[-1] for k, v in parse_qs(url.partition("?")[2]).items()}
