"""A local fake of the IBM Cloud VPC API, the Global Tagging API and the IAM token
endpoint, on 127.0.0.1, for the real SDKs (ibm-vpc, ibm-platform-services) to talk to.

What it keeps faithful to the real services:
- paths and query parameters: `/v1/bare_metal_servers`, `/v1/instances`, `/v1/images`,
  `/v1/virtual_network_interfaces/{id}`, `/v1/instances/{id}/actions`,
  `/v1/bare_metal_servers/{id}/restart`; `version` (YYYY-MM-DD, required, not in the
  future) and `generation=2` on every VPC call; `start`/`limit` pagination with
  `first.href`, `next.href` and `total_count`; `name` and `vpc.id` filters;
- codes: 201 on create, 204 on delete and restart, 404/400/409/401 with the VPC error
  body `{"errors": [{"code", "message", "more_info"}], "trace", "status_code"}`;
- each prototype is checked with the SDK's own model classes (`from_dict`), and every
  answer can be parsed by the SDK's response models (tests/functional/test_vpc.py checks);
- servers are `pending`, then `running` after `boot_seconds` (or `failed` with
  `status_reasons`); a deleted server is `deleting`, then gone after `delete_seconds`;
  a VNI's `primary_ip.address` is `0.0.0.0` and its `mac_address` absent while pending;
- names: a server name is unique per kind in the region, a virtual network interface
  name unique in its VPC (one is made up when the request has none); a taken name is a
  400 with code `validation_unique_failed`, as the real API answers. With
  `wrap_bare_metal_errors`, a bare metal create refuses a taken name the way
  terraform-provider-ibm issue 5389 shows the API doing it: a 400 whose only error is
  `{"code": "bad_field", "message": "Handler Error: Status=400, JSON={\"errors\":
  [{\"code\":\"validation_unique_failed\",\"message\":...}],\"trace\":...}",
  "more_info": ""}`, the same trace outside;
- bare metal power: `stop` needs `running` (then `stopping`, `stopped` after
  `stop_seconds`), `start` needs `stopped`, `restart` needs `running`, and `PUT
  .../initialization` (reinitialize: image, keys, user data) needs `stopped`, then the
  server is `reinitializing` and starts by itself (`starting`, `running`), as the API
  reference says ("The server must be stopped. Upon successful reinitiatilization, the
  bare metal server will be started automatically": ibm-vpc 0.36.0 vpc_v1.py,
  `replace_bare_metal_server_initialization`); anything else is a 409. A reinitialization
  can fail (`fail_reinitialization`): the server is then `failed` with the status reason
  `cannot_reinitialize` (the SDK's `BareMetalServerStatusReason.CodeEnum`: "An error
  occurred while reinitializing bare metal server"; terraform-provider-ibm's
  resource_ibm_is_bare_metal_server_initialization.go waits for `running` or `failed`
  after `ReplaceBareMetalServerInitialization`). Such a server is accepted for another
  reinitialization, as issue 21 says the API allows; no API page found here states it
  (the SDK says only "The server must be stopped"), so this is the one assumption here;
- instance power (`POST /instances/{id}/actions`): `stop` needs `running` (then
  `stopping`, `stopped`), `start` needs `stopped`; `reboot` is accepted as before.
  `GET /instances/{id}/initialization` answers the keys (the SDK's `InstanceInitialization`);
  `POST /instances/{id}/reinitialize` (ibm-vpc >= 0.36.0 `create_instance_reinitialization`,
  API 2026-07-21: IBM/vpc-go-sdk pull 165) needs `stopped` (409 otherwise), refuses an
  instance made from a `catalog_offering`, takes an
  `InstanceReinitializePrototypeInstanceReinitializeByImage` (checked with the SDK's model),
  replaces image, keys and user data, destroys the boot volume and attaches a new one (the
  boot volume attachment id changes), and starts the instance by itself (`starting`, then
  `running`; an instance has no `reinitializing` status in the SDK's `Instance.StatusEnum`).
  It answers 204 without a body: the SDK method sends no `Accept` and returns no result
  model, like `start_bare_metal_server`, whose answer is a 204;
- Global Tagging: `POST /v3/tags/attach`, `POST /v3/tags/detach`, `GET /v3/tags?attached_to=`;
  an attached tag shows in the listing only after `tag_delay` seconds (tagging is
  eventually consistent);
- IAM: `POST /identity/token` with `grant_type=urn:ibm:params:oauth:grant-type:apikey`,
  answering a JWT (a refusal in IAM's own shape, `errorCode` and `context.requestId`);
  the VPC and tagging APIs refuse requests without such a token (401).

Faults (tests/fakes/ibm_common.py): at construction (`faults=[...]`), `inject(method,
path_regex, status=429|500|..., retry_after=..., times=n, code=..., skip=n)`, or over
HTTP (`POST /_fake/faults`); `timeout=seconds` (the answer comes too late) and
`apply=True` (the request takes effect, then the answer is the fault: a create whose
reply was lost).
"""

from __future__ import annotations

import datetime
import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode

from fakes.ibm_common import CONTROL, Fault, Faults, Iam, error_body, fault_response, json_response
from ibm_vpc import vpc_v1
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

ACCOUNT = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
API_KEY = "fake-api-key"
GROUP = {"href": "https://resource-controller.cloud.ibm.com/v2/resource_groups/rg1", "id": "rg1", "name": "default"}
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MORE_INFO = "https://cloud.ibm.com/docs/vpc?topic=vpc-rias-error-messages"
VNI_WORDS = ("amber", "brisk", "cobalt", "dusky", "ember", "frosty", "gusty", "hazel")
# The SDK's model classes that check the nested parts of a create request.
BM_PCI_ATTACHMENT = getattr(
    vpc_v1, "BareMetalServerPrimaryNetworkAttachmentPrototypeBareMetalServerPrimaryNetworkAttachmentByPCIPrototype")
BM_VNI_PROTOTYPE = getattr(vpc_v1, "BareMetalServerNetworkAttachmentPrototypeVirtualNetworkInterface"
                                   "VirtualNetworkInterfacePrototypeBareMetalServerNetworkAttachmentContext")
INSTANCE_VNI_PROTOTYPE = getattr(vpc_v1, "InstanceNetworkAttachmentPrototypeVirtualNetworkInterface"
                                         "VirtualNetworkInterfacePrototypeInstanceNetworkAttachmentContext")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, target: str | None = None, headers: dict | None = None,
                 body: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.target, self.headers = status, code, message, target, headers or {}
        self.body = body  # the whole answer, when it is not the usual error body


def wrapped_in_bad_field(error: "ApiError") -> "ApiError":
    """An error as a bare metal create can answer it (terraform-provider-ibm issue 5389):
    a 400 `bad_field` whose message carries the real error's JSON."""
    trace = str(uuid.uuid4())
    inner = json.dumps({"errors": [{"code": error.code, "message": error.message}], "trace": trace},
                       separators=(",", ":"))
    body = {"errors": [{"code": "bad_field", "message": f"Handler Error: Status={error.status}, JSON={inner}",
                        "more_info": ""}], "trace": trace, "status_code": 400}
    return ApiError(400, "bad_field", body["errors"][0]["message"], body=body)


@dataclass
class Record:
    kind: str  # "bare_metal_server" | "instance"
    id: str
    name: str
    zone: str
    vpc: dict
    subnet: dict
    profile: str
    image: str
    user_data: str | None
    created: float
    created_at: str
    vni_id: str
    attachment_id: str
    nic_id: str
    mac: str
    ip: str
    vni_name: str = ""
    keys: list[str] = field(default_factory=list)
    fail: tuple[str, str] | None = None
    deleted_at: float | None = None
    restarts: int = 0
    power: str = "on"  # on, stopping, starting, reinitializing: the last power action
    power_at: float = 0.0
    reinitializations: int = 0
    boot_volume: str = ""  # an instance's boot volume (and its attachment): a new one at each reinitialization
    catalog_offering: bool = False  # made from a catalog offering: cannot be reinitialized
    reinit_fails: bool = False  # the reinitialization under way ends `failed` (cannot_reinitialize)


@dataclass
class Request_:
    method: str
    path: str
    query: dict
    body: dict | None
    status: int = 0


def _now_iso(t: float | None = None) -> str:
    when = datetime.datetime.fromtimestamp(t if t is not None else time.time(), datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class FakeCloud:
    """The three fake services behind one local HTTP server."""

    def __init__(self, boot_seconds: float = 0.3, delete_seconds: float = 0.2, region: str = "us-south",
                 faults: list[dict] | None = None, tag_delay: float = 0.0, stop_seconds: float = 0.2,
                 start_seconds: float = 0.2, reinit_seconds: float = 0.2, wrap_bare_metal_errors: bool = False):
        self.boot_seconds = boot_seconds
        self.delete_seconds = delete_seconds
        self.stop_seconds, self.start_seconds, self.reinit_seconds = stop_seconds, start_seconds, reinit_seconds
        self.tag_delay = tag_delay
        self.wrap_bare_metal_errors = wrap_bare_metal_errors  # a taken name as a bad_field (issue 5389)
        self.region = region
        self.lock = threading.RLock()
        self.records: dict[str, Record] = {}
        self.tags: dict[str, set[str]] = {}
        self.tagged_at: dict[tuple[str, str], float] = {}  # (crn, tag) -> when it was attached
        self.faults = Faults(faults)
        self.failing_names: dict[str, tuple[str, str]] = {}
        self.failing_reinitializations: dict[str, int] = {}  # server id -> reinitializations left to fail
        self.log: list[Request_] = []
        self.iam = Iam(API_KEY, ACCOUNT)
        self._macs = itertools.count(0x100)
        self._ips = itertools.count(4)
        self.vpcs = {"r006-vpc-1": {"id": "r006-vpc-1", "name": "fleet-vpc"}}
        self.subnets = {
            "0717-subnet-1": {"id": "0717-subnet-1", "name": "fleet-subnet", "vpc": "r006-vpc-1",
                              "zone": f"{region}-1", "prefix": "10.240.0."},
        }
        self.zones = {f"{region}-{n}" for n in (1, 2, 3)}
        self.bare_metal_profiles = {"bx2d-metal-96x384", "cx2d-metal-96x192"}
        self.instance_profiles = {"bx2-2x8", "cx2-4x8"}
        self.images: dict[str, dict] = {}
        self.add_image("r006-ipxe-netboot", "ibm-ipxe-netboot-1", "ipxe")
        self.add_image("r006-custom-ipxe", "bootfleet-ipxe-vsi", "cloud_init", visibility="private")
        self.add_image("r006-ubuntu", "ibm-ubuntu-24-04-minimal-amd64-1", "cloud_init")
        self._server = None
        self._thread = None
        self.port = 0

    # --- running -----------------------------------------------------------------------

    def start(self) -> "FakeCloud":
        self._server = make_server("127.0.0.1", 0, self.wsgi, threaded=True, request_handler=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def vpc_url(self) -> str:
        return self.base + "/v1"

    @property
    def tagging_url(self) -> str:
        return self.base

    @property
    def iam_url(self) -> str:
        return self.base

    @property
    def tokens(self) -> set[str]:
        return self.iam.tokens

    # --- test controls -----------------------------------------------------------------

    def add_image(self, image_id: str, name: str, user_data_format: str, visibility: str = "public") -> None:
        self.images[image_id] = {"id": image_id, "name": name, "user_data_format": user_data_format,
                                 "visibility": visibility}

    def inject(self, method: str, path: str, status: int = 500, times: int = 1, retry_after: int | None = None,
               timeout: float | None = None, apply: bool = False, code: str = "", message: str = "",
               skip: int = 0) -> Fault:
        """After `skip` matching requests, the next `times` get this fault instead of their answer."""
        return self.faults.add(method=method, path=path, status=status, times=times, retry_after=retry_after,
                               timeout=timeout, apply=apply, code=code, message=message, skip=skip)

    def fail_servers_named(self, name: str, code: str = "cannot_start_capacity",
                           message: str = "The server could not be started: insufficient capacity in the zone") -> None:
        """Servers created with this name end `failed` with this status reason."""
        self.failing_names[name] = (code, message)

    def fail_reinitialization(self, server_id: str, times: int = 1) -> None:
        """The next `times` reinitializations of this bare metal server end `failed`, with the
        status reason `cannot_reinitialize`."""
        with self.lock:
            self.failing_reinitializations[server_id] = times

    def add_foreign_server(self, name: str, kind: str = "bare_metal_server", tags: tuple[str, ...] = ()) -> str:
        """A server that someone else made (not through bootfleet)."""
        subnet = next(iter(self.subnets.values()))
        body = {"name": name, "zone": {"name": subnet["zone"]}, "profile": {"name": "bx2d-metal-96x384"}}
        with self.lock:
            record = self._new_record(kind, name, body, subnet, "r006-ubuntu", None)
            record.created -= 3600
            record.created_at = _now_iso(record.created)
            if tags:
                self.tags[self._crn(record)] = set(tags)
        return record.id

    def servers(self, kind: str | None = None) -> list[dict]:
        """The servers that exist now (not yet gone), as the API shows them."""
        with self.lock:
            self._advance()
            return [self._view(r) for r in self.records.values() if kind in (None, r.kind)]

    def requests(self, method: str | None = None, path: str = "") -> list[Request_]:
        with self.lock:
            return [r for r in self.log if method in (None, r.method) and re.search(path, r.path)]

    # --- WSGI --------------------------------------------------------------------------

    def wsgi(self, environ, start_response):
        request = Request(environ)
        if request.path == CONTROL:
            return self.faults.control(request)(environ, start_response)
        try:
            body = json.loads(request.get_data() or b"null") if request.mimetype == "application/json" else None
        except ValueError:
            body = None
        entry = Request_(request.method, request.path, {k: v for k, v in request.args.items()}, body)
        with self.lock:
            self.log.append(entry)
        fault = self.faults.match(request.method, request.path)
        if fault and fault.apply:
            self._answer(request, body)
        response = fault_response(fault, MORE_INFO) if fault else self._answer(request, body)
        entry.status = response.status_code
        return response(environ, start_response)

    def _answer(self, request: Request, body) -> Response:
        try:
            path = request.path
            if path == "/identity/token" and request.method == "POST":
                return self._iam_token(request)
            if path.startswith("/v3/tags"):
                self._authorize(request)
                return self._tagging(request, body)
            if path.startswith("/v1/"):
                self._authorize(request)
                self._check_version(request)
                with self.lock:
                    self._advance()
                    return self._vpc(request, body)
            raise ApiError(404, "not_found", f"no such path: {path}")
        except ApiError as e:
            return self._error(e)

    @staticmethod
    def _json(data, status: int = 200, headers: dict | None = None) -> Response:
        return Response(json.dumps(data), status=status, mimetype="application/json", headers=headers)

    def _error(self, e: ApiError) -> Response:
        body = e.body or error_body(e.status, e.code, e.message, MORE_INFO, e.target)
        return json_response(body, e.status, e.headers)

    # --- IAM ---------------------------------------------------------------------------

    def _iam_token(self, request: Request) -> Response:
        return self.iam.token(request)

    def _authorize(self, request: Request) -> None:
        if not self.iam.valid(request):
            raise ApiError(401, "not_authorized", "The request was not authorized: a valid IAM access token is required")

    # --- Global Tagging --------------------------------------------------------------

    def _tagging(self, request: Request, body) -> Response:
        if request.path == "/v3/tags" and request.method == "GET":
            crn = request.args.get("attached_to")
            with self.lock:
                names = sorted(self._visible_tags(crn)) if crn else \
                    sorted(set().union(*(self._visible_tags(c) for c in self.tags)))
            offset = int(request.args.get("offset", 0))
            limit = int(request.args.get("limit", 100))
            items = [{"name": n} for n in names[offset:offset + limit]]
            return self._json({"total_count": len(names), "offset": offset, "limit": limit, "items": items})
        if request.path in ("/v3/tags/attach", "/v3/tags/detach") and request.method == "POST":
            if not isinstance(body, dict) or not body.get("resources"):
                raise ApiError(400, "bad_request", "resources: a list of {resource_id} is required")
            names = body.get("tag_names") or ([body["tag_name"]] if body.get("tag_name") else [])
            if not names:
                raise ApiError(400, "bad_request", "tag_names: at least one tag is required")
            for name in names:
                if not re.match(r"^[A-Za-z0-9 _.:-]{1,128}$", name):
                    raise ApiError(400, "bad_request", f"tag name {name!r} is not valid")
            results = []
            with self.lock:
                for resource in body["resources"]:
                    crn = resource.get("resource_id", "")
                    if not any(self._crn(r) == crn for r in self.records.values()):
                        results.append({"resource_id": crn, "is_error": True})
                        continue
                    tags = self.tags.setdefault(crn, set())
                    if request.path.endswith("attach"):
                        for name in set(names) - tags:
                            self.tagged_at[(crn, name)] = time.time()
                        tags.update(names)
                    else:
                        tags.difference_update(names)
                    results.append({"resource_id": crn, "is_error": False})
            return self._json({"results": results})
        raise ApiError(404, "not_found", f"no such path: {request.method} {request.path}")

    def _visible_tags(self, crn: str) -> set[str]:
        """The tags the listing shows: attached at least `tag_delay` seconds ago."""
        now = time.time()
        return {t for t in self.tags.get(crn, set()) if now - self.tagged_at.get((crn, t), 0) >= self.tag_delay}

    # --- VPC ---------------------------------------------------------------------------

    def _check_version(self, request: Request) -> None:
        version = request.args.get("version")
        if not version:
            raise ApiError(400, "missing_version", "The version query parameter is required", "version")
        try:
            when = datetime.date.fromisoformat(version)
        except ValueError:
            raise ApiError(400, "invalid_version", f"version {version!r} must be a date in YYYY-MM-DD format",
                           "version") from None
        if when > datetime.datetime.now(datetime.timezone.utc).date() or when < datetime.date(2019, 1, 1):
            raise ApiError(400, "invalid_version", f"version {version} must be between 2019-01-01 and today",
                           "version")
        if request.args.get("generation") != "2":
            raise ApiError(400, "invalid_generation", "generation must be 2 for VPC infrastructure", "generation")

    def _vpc(self, request: Request, body) -> Response:
        method, path = request.method, request.path[len("/v1"):]
        match = re.fullmatch(r"/(bare_metal_servers|instances)(?:/([^/]+))?(/restart|/start|/stop|/initialization"
                             r"|/actions|/reinitialize)?", path)
        if match:
            collection, server_id, action = match.groups()
            kind = "bare_metal_server" if collection == "bare_metal_servers" else "instance"
            if server_id is None and method == "GET":
                return self._list(request, collection, kind)
            if server_id is None and method == "POST":
                return self._create(kind, body)
            record = self._get(kind, server_id)
            if action is None and method == "GET":
                return self._json(self._view(record))
            if action is None and method == "DELETE":
                if record.deleted_at is None:
                    record.deleted_at = time.time()
                return Response(status=204)
            if kind == "bare_metal_server" and method == "POST" and action in ("/restart", "/start", "/stop"):
                return self._power(record, action[1:], body)
            if kind == "bare_metal_server" and action == "/initialization" and method == "GET":
                return self._json(self._initialization(record))
            if kind == "bare_metal_server" and action == "/initialization" and method == "PUT":
                return self._reinitialize(record, body)
            if action == "/actions" and method == "POST" and kind == "instance":
                return self._instance_action(record, body)
            if kind == "instance" and action == "/initialization" and method == "GET":
                return self._json({"keys": [self._key_ref(k) for k in record.keys]})
            if kind == "instance" and action == "/reinitialize" and method == "POST":
                return self._reinitialize_instance(record, body)
        match = re.fullmatch(r"/virtual_network_interfaces/([^/]+)", path)
        if match and method == "GET":
            for record in self.records.values():
                if record.vni_id == match.group(1):
                    return self._json(self._vni(record))
            raise ApiError(404, "virtual_network_interface_not_found",
                           f"Virtual network interface not found: {match.group(1)}")
        if path == "/images" and method == "GET":
            return self._list_images(request)
        raise ApiError(404, "not_found", f"no such path: {method} /v1{path}")

    def _advance(self) -> None:
        """Time passes: deleted servers go away."""
        now = time.time()
        for record in list(self.records.values()):
            if record.deleted_at is not None and now - record.deleted_at >= self.delete_seconds:
                del self.records[record.id]
                self.tags.pop(self._crn(record), None)

    def _get(self, kind: str, server_id: str) -> Record:
        record = self.records.get(server_id)
        if record is None or record.kind != kind:
            what = "Bare metal server" if kind == "bare_metal_server" else "Instance"
            raise ApiError(404, f"{kind}_not_found", f"{what} not found: {server_id}")
        return record

    def _page(self, request: Request, collection: str, items: list) -> dict:
        try:
            limit = int(request.args.get("limit", DEFAULT_LIMIT))
        except ValueError:
            raise ApiError(400, "invalid_limit", "limit must be a whole number", "limit") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise ApiError(400, "invalid_limit", f"limit must be between 1 and {MAX_LIMIT}", "limit")
        start = request.args.get("start")
        ids = [i["id"] for i in items]
        offset = ids.index(start) if start in ids else 0
        if start and start not in ids:
            raise ApiError(400, "invalid_start", f"start {start!r} is not a valid page token", "start")
        query = {k: v for k, v in request.args.items() if k not in ("start", "limit")}
        href = f"{self.vpc_url}/{collection}"
        page = {"first": {"href": f"{href}?{urlencode({**query, 'limit': limit})}"}, "limit": limit,
                "total_count": len(items), collection: items[offset:offset + limit]}
        if offset + limit < len(items):
            page["next"] = {"href": f"{href}?{urlencode({**query, 'limit': limit, 'start': ids[offset + limit]})}"}
        return page

    def _list(self, request: Request, collection: str, kind: str) -> Response:
        records = [r for r in self.records.values() if r.kind == kind]
        if request.args.get("name"):
            records = [r for r in records if r.name == request.args["name"]]
        if request.args.get("vpc.id"):
            records = [r for r in records if r.vpc["id"] == request.args["vpc.id"]]
        records.sort(key=lambda r: r.created)
        return self._json(self._page(request, collection, [self._view(r) for r in records]))

    def _list_images(self, request: Request) -> Response:
        images = list(self.images.values())
        formats = [f for v in request.args.getlist("user_data_format") for f in v.split(",") if f]
        if formats:
            images = [i for i in images if i["user_data_format"] in formats]
        if request.args.get("name"):
            images = [i for i in images if i["name"] == request.args["name"]]
        return self._json(self._page(request, "images", [self._image_view(i) for i in images]))

    # creating ----------------------------------------------------------------------------

    def _create(self, kind: str, body) -> Response:
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_body", "The request body must be a JSON object")
        try:
            if kind == "bare_metal_server":
                prototype = self._bare_metal_prototype(body)
                image = prototype.initialization.image
                user_data = prototype.initialization.user_data
                vni = prototype.primary_network_attachment.virtual_network_interface
            else:
                prototype = self._instance_prototype(body)
                image, user_data = prototype.image, prototype.user_data
                vni = prototype.primary_network_attachment.virtual_network_interface
        except (ValueError, TypeError, AttributeError) as e:
            raise ApiError(400, "invalid_prototype", f"The prototype is not valid: {e}") from None
        profile = (prototype.profile or {}).get("name") if isinstance(prototype.profile, dict) else None
        profiles = self.bare_metal_profiles if kind == "bare_metal_server" else self.instance_profiles
        if profile not in profiles:
            raise ApiError(400, "profile_not_found", f"Profile not found: {profile}", "profile.name")
        zone = (prototype.zone or {}).get("name")
        if zone not in self.zones:
            raise ApiError(400, "zone_not_found", f"Zone not found: {zone}", "zone.name")
        image_id = (image or {}).get("id") if isinstance(image, dict) else None
        if image_id not in self.images:
            raise ApiError(400, "image_not_found", f"Image not found: {image_id}", "image.id")
        if kind == "bare_metal_server" and user_data and user_data.startswith("#!ipxe") \
                and self.images[image_id]["user_data_format"] != "ipxe":
            raise ApiError(400, "image_user_data_format_mismatch",
                           f"Image {image_id} has user_data_format {self.images[image_id]['user_data_format']},"
                           " so iPXE user data cannot be used", "initialization.image")
        subnet_id = ((vni or {}).get("subnet") or {}).get("id") if isinstance(vni, dict) else None
        subnet = self.subnets.get(subnet_id)
        if subnet is None:
            raise ApiError(400, "subnet_not_found", f"Subnet not found: {subnet_id}",
                           "primary_network_attachment.virtual_network_interface.subnet.id")
        if subnet["zone"] != zone:
            raise ApiError(400, "subnet_zone_mismatch", f"Subnet {subnet_id} is in {subnet['zone']}, not {zone}")
        vpc_id = (prototype.vpc or {}).get("id") if isinstance(prototype.vpc, dict) else None
        if vpc_id and vpc_id != subnet["vpc"]:
            raise ApiError(400, "vpc_subnet_mismatch", f"Subnet {subnet_id} is not in VPC {vpc_id}")
        name = prototype.name or f"fake-{uuid.uuid4().hex[:8]}"
        if not re.fullmatch(r"[a-z]|[a-z][-a-z0-9]*[a-z0-9]", name) or len(name) > 63:
            raise ApiError(400, "invalid_name", f"name {name!r} must be lower case letters, digits and hyphens",
                           "name")
        taken = None
        if any(r.kind == kind and r.name == name for r in self.records.values()):
            taken = ApiError(400, "validation_unique_failed", f"Provided Name ({name}) is not unique", "name")
        vni_name = (vni or {}).get("name") if isinstance(vni, dict) else None
        if not taken and vni_name and any(r.vni_name == vni_name and r.vpc["id"] == subnet["vpc"]
                                          for r in self.records.values()):
            taken = ApiError(400, "validation_unique_failed", "Another VNI with the requested name already exists",
                             "primary_network_attachment.virtual_network_interface.name")
        if taken:
            raise wrapped_in_bad_field(taken) if kind == "bare_metal_server" and self.wrap_bare_metal_errors else taken
        if len(user_data or "") > 64 * 1024:
            raise ApiError(400, "user_data_too_large", "user_data must be at most 64 KiB", "user_data")
        keys = [k.get("id") for k in (body.get("initialization") or body).get("keys") or [] if isinstance(k, dict)]
        record = self._new_record(kind, name, body, subnet, image_id, user_data, vni_name, keys)
        return self._json(self._view(record), 201)

    def _bare_metal_prototype(self, body: dict):
        if "primary_network_attachment" in body:
            prototype = vpc_v1.BareMetalServerPrototypeBareMetalServerByNetworkAttachment.from_dict(body)
            attachment = body["primary_network_attachment"]
            if attachment.get("interface_type", "pci") != "pci":
                raise ValueError("primary_network_attachment.interface_type must be pci")
            BM_PCI_ATTACHMENT.from_dict(attachment)
            BM_VNI_PROTOTYPE.from_dict(attachment["virtual_network_interface"])
        else:
            raise ValueError("primary_network_attachment is required (this fake speaks network attachments)")
        prototype.primary_network_attachment = _Obj(body["primary_network_attachment"])
        return prototype

    def _instance_prototype(self, body: dict):
        if "image" in body and "primary_network_attachment" in body:
            prototype = vpc_v1.InstancePrototypeInstanceByImageInstanceByImageInstanceByNetworkAttachment.from_dict(
                body)
            vpc_v1.InstanceNetworkAttachmentPrototype.from_dict(body["primary_network_attachment"])
            INSTANCE_VNI_PROTOTYPE.from_dict(body["primary_network_attachment"]["virtual_network_interface"])
        else:
            raise ValueError("image and primary_network_attachment are required (this fake speaks instance by image"
                             " with network attachments)")
        if "profile" not in body:
            raise ValueError("profile is required")
        prototype.primary_network_attachment = _Obj(body["primary_network_attachment"])
        return prototype

    def _vni_name(self, vpc_id: str) -> str:
        """A made-up name no VNI in the VPC has, as the API makes one up."""
        taken = {r.vni_name for r in self.records.values() if r.vpc["id"] == vpc_id}
        while True:
            name = f"{VNI_WORDS[uuid.uuid4().int % len(VNI_WORDS)]}-{uuid.uuid4().hex[:6]}-vni"
            if name not in taken:
                return name

    def _new_record(self, kind: str, name: str, body: dict, subnet: dict, image_id: str, user_data,
                    vni_name: str | None = None, keys: list[str] | None = None) -> Record:
        now = time.time()
        prefix = "0717-" if kind == "bare_metal_server" else "0717_"
        n = next(self._macs)
        record = Record(
            kind=kind, id=prefix + str(uuid.uuid4()), name=name, zone=subnet["zone"],
            vpc=self.vpcs[subnet["vpc"]], subnet=subnet, profile=body["profile"]["name"], image=image_id,
            user_data=user_data, created=now, created_at=_now_iso(now), vni_id="0717-" + str(uuid.uuid4()),
            attachment_id="0717-" + str(uuid.uuid4()), nic_id="0717-" + str(uuid.uuid4()),
            mac=f"02:00:0a:f0:{(n >> 8) & 0xff:02x}:{n & 0xff:02x}", ip=subnet["prefix"] + str(next(self._ips)),
            fail=self.failing_names.get(name), vni_name=vni_name or self._vni_name(subnet["vpc"]),
            boot_volume="r006-" + str(uuid.uuid4()),
            keys=list(keys or []),
        )
        self.records[record.id] = record
        return record

    def _power(self, record: Record, action: str, body) -> Response:
        """stop needs running, start needs stopped, restart needs running (a 409 otherwise)."""
        status = self._status(record)
        need = "stopped" if action == "start" else "running"
        if status != need:
            raise ApiError(409, f"bare_metal_server_not_{need}",
                           f"Bare metal server {record.id} is {status}; it must be {need} to {action} it")
        if action == "stop" and (body or {}).get("type") not in ("soft", "hard"):
            raise ApiError(400, "invalid_type", "type must be soft or hard", "type")
        if action == "restart":
            record.restarts += 1
        else:
            record.power, record.power_at = ("stopping" if action == "stop" else "starting"), time.time()
        return Response(status=204)

    def _key_ref(self, key_id: str) -> dict:
        return {"crn": f"crn:v1:bluemix:public:is:{self.region}:a/{ACCOUNT}::key:{key_id}",
                "fingerprint": "SHA256:yxavE4CIOL2NlsqcurRO3xGjkP6m/0mp8ugojH5yxlY",
                "href": f"{self.vpc_url}/keys/{key_id}", "id": key_id, "name": f"key-{key_id[-6:]}"}

    def _initialization(self, record: Record) -> dict:
        image = self.images.get(record.image, {"id": record.image, "name": record.image})
        return {"image": {"crn": f"crn:v1:bluemix:public:is:{self.region}:a/{ACCOUNT}::image:{record.image}",
                          "href": f"{self.vpc_url}/images/{record.image}", "id": record.image,
                          "name": image["name"], "resource_type": "image"},
                "keys": [self._key_ref(k) for k in record.keys], "user_accounts": []}

    def _reinitialize(self, record: Record, body) -> Response:
        status = self._status(record)
        if status != "stopped" and not (status == "failed" and record.reinit_fails):
            raise ApiError(409, "bare_metal_server_not_stopped",
                           f"Bare metal server {record.id} is {status}; it must be stopped to reinitialize it")
        if not isinstance(body, dict) or "image" not in body or "keys" not in body:
            raise ApiError(400, "invalid_body", "image and keys are required")
        try:
            vpc_v1.BareMetalServerInitializationPrototype.from_dict(body)
        except (ValueError, TypeError) as e:
            raise ApiError(400, "invalid_prototype", f"The initialization is not valid: {e}") from None
        image_id = (body["image"] or {}).get("id")
        if image_id not in self.images:
            raise ApiError(400, "image_not_found", f"Image not found: {image_id}", "image.id")
        user_data = body.get("user_data")
        if user_data and user_data.startswith("#!ipxe") and self.images[image_id]["user_data_format"] != "ipxe":
            raise ApiError(400, "image_user_data_format_mismatch",
                           f"Image {image_id} cannot take iPXE user data", "image")
        record.image, record.keys, record.user_data = image_id, [k["id"] for k in body["keys"]], user_data
        self._start_reinitialization(record)
        return self._json(self._initialization(record))

    def _start_reinitialization(self, record: Record) -> None:
        record.power, record.power_at = "reinitializing", time.time()
        record.reinitializations += 1
        left = self.failing_reinitializations.get(record.id, 0)
        record.reinit_fails = left > 0
        if left:
            self.failing_reinitializations[record.id] = left - 1

    def _reinitialize_instance(self, record: Record, body) -> Response:
        """POST /instances/{id}/reinitialize: stopped only; not from a catalog offering; a new
        boot volume from the image; started by itself afterwards; 204."""
        status = self._status(record)
        if status != "stopped":
            # 409 and the code: the fake's own, like bare_metal_server_not_stopped (no documented code found)
            raise ApiError(409, "instance_not_stopped",
                           f"Instance {record.id} is {status}; it must be stopped to reinitialize it")
        if record.catalog_offering:
            raise ApiError(400, "instance_catalog_offering_not_reinitializable",
                           f"Instance {record.id} was provisioned from a catalog offering and cannot be reinitialized")
        if not isinstance(body, dict) or "image" not in body:
            raise ApiError(400, "invalid_body", "image is required (this fake speaks reinitialize by image)", "image")
        try:
            vpc_v1.InstanceReinitializePrototypeInstanceReinitializeByImage.from_dict(body)
        except (ValueError, TypeError) as e:
            raise ApiError(400, "invalid_prototype", f"The reinitialize prototype is not valid: {e}") from None
        image_id = (body["image"] or {}).get("id")
        if image_id not in self.images:
            raise ApiError(400, "image_not_found", f"Image not found: {image_id}", "image.id")
        if len(body.get("user_data") or "") > 64 * 1024:
            raise ApiError(400, "user_data_too_large", "user_data must be at most 64 KiB", "user_data")
        # Keys and user data not given are gone afterwards (the prototype's words).
        record.image, record.user_data = image_id, body.get("user_data")
        record.keys = [k.get("id") for k in body.get("keys") or [] if isinstance(k, dict)]
        record.boot_volume = "r006-" + str(uuid.uuid4())  # the old one is destroyed
        self._start_reinitialization(record)
        return Response(status=204)

    def _instance_action(self, record: Record, body) -> Response:
        kind = (body or {}).get("type")
        if kind not in ("reboot", "start", "stop"):
            raise ApiError(400, "invalid_action", f"type must be one of reboot, start, stop, got {kind!r}", "type")
        if kind == "reboot":
            record.restarts += 1
        else:
            status = self._status(record)
            need = "stopped" if kind == "start" else "running"
            if status != need:
                raise ApiError(409, f"instance_not_{need}",
                               f"Instance {record.id} is {status}; it must be {need} to {kind} it")
            record.power, record.power_at = ("stopping" if kind == "stop" else "starting"), time.time()
        now = _now_iso()
        return self._json({"completed_at": now, "created_at": now, "force": bool((body or {}).get("force")),
                           "href": f"{self._href(record)}/actions/{uuid.uuid4()}", "id": str(uuid.uuid4()),
                           "resource_type": "instance_action", "started_at": now, "status": "completed",
                           "type": kind}, 201)

    # views ---------------------------------------------------------------------------------

    def _status(self, record: Record) -> str:
        now = time.time()
        if record.deleted_at is not None:
            return "deleting"
        if now - record.created < self.boot_seconds:
            return "pending"
        if record.fail and record.power == "on":  # a server that never came up
            return "failed"
        since = now - record.power_at
        if record.power == "stopping":
            return "stopping" if since < self.stop_seconds else "stopped"
        if record.power == "starting":
            return "starting" if since < self.start_seconds else "running"
        if record.power == "reinitializing":  # then it starts by itself
            if since < self.reinit_seconds:  # (an instance has no status `reinitializing`)
                return "reinitializing" if record.kind == "bare_metal_server" else "starting"
            if record.reinit_fails:
                return "failed"
            return "starting" if since < self.reinit_seconds + self.start_seconds else "running"
        return "running"

    def _crn(self, record: Record) -> str:
        what = "bare-metal-server" if record.kind == "bare_metal_server" else "instance"
        return f"crn:v1:bluemix:public:is:{record.zone}:a/{ACCOUNT}::{what}:{record.id}"

    def _href(self, record: Record) -> str:
        collection = "bare_metal_servers" if record.kind == "bare_metal_server" else "instances"
        return f"{self.vpc_url}/{collection}/{record.id}"

    def _ip_view(self, record: Record) -> dict:
        address = record.ip if self._status(record) != "pending" else "0.0.0.0"
        ip_id = "0717-" + record.vni_id[5:13] + "-ip"
        return {"address": address, "href": f"{self.vpc_url}/subnets/{record.subnet['id']}/reserved_ips/{ip_id}",
                "id": ip_id, "name": f"{record.name}-ip", "resource_type": "subnet_reserved_ip"}

    def _subnet_ref(self, record: Record) -> dict:
        subnet = record.subnet
        return {"crn": f"crn:v1:bluemix:public:is:{subnet['zone']}:a/{ACCOUNT}::subnet:{subnet['id']}",
                "href": f"{self.vpc_url}/subnets/{subnet['id']}", "id": subnet["id"], "name": subnet["name"],
                "resource_type": "subnet"}

    def _vpc_ref(self, record: Record) -> dict:
        vpc = record.vpc
        return {"crn": f"crn:v1:bluemix:public:is:{self.region}:a/{ACCOUNT}::vpc:{vpc['id']}",
                "href": f"{self.vpc_url}/vpcs/{vpc['id']}", "id": vpc["id"], "name": vpc["name"], "resource_type": "vpc"}

    def _zone_ref(self, record: Record) -> dict:
        return {"href": f"{self.vpc_url}/regions/{self.region}/zones/{record.zone}", "name": record.zone}

    def _vni_ref(self, record: Record) -> dict:
        return {"crn": f"crn:v1:bluemix:public:is:{record.zone}:a/{ACCOUNT}::virtual-network-interface:{record.vni_id}",
                "href": f"{self.vpc_url}/virtual_network_interfaces/{record.vni_id}", "id": record.vni_id,
                "name": record.vni_name, "resource_type": "virtual_network_interface"}

    def _attachment_ref(self, record: Record) -> dict:
        kind = "bare_metal_server_network_attachment" if record.kind == "bare_metal_server" \
            else "instance_network_attachment"
        return {"href": f"{self._href(record)}/network_attachments/{record.attachment_id}", "id": record.attachment_id,
                "name": "eth0", "primary_ip": self._ip_view(record), "resource_type": kind,
                "subnet": self._subnet_ref(record), "virtual_network_interface": self._vni_ref(record)}

    def _nic_ref(self, record: Record) -> dict:
        return {"href": f"{self._href(record)}/network_interfaces/{record.nic_id}", "id": record.nic_id,
                "name": "eth0", "primary_ip": self._ip_view(record), "resource_type": "network_interface",
                "subnet": self._subnet_ref(record)}

    def _reasons(self, record: Record, status: str) -> list[dict]:
        if status == "failed" and record.power == "reinitializing" and record.reinit_fails:
            return [{"code": "cannot_reinitialize",
                     "message": "An error occurred while reinitializing bare metal server",
                     "more_info": "https://cloud.ibm.com/docs/vpc?topic=vpc-troubleshooting"}]
        if status != "failed" or not record.fail:
            return []
        code, message = record.fail
        return [{"code": code, "message": message,
                 "more_info": "https://cloud.ibm.com/docs/vpc?topic=vpc-troubleshooting"}]

    def _view(self, record: Record) -> dict:
        status = self._status(record)
        common = {
            "created_at": record.created_at, "crn": self._crn(record), "enable_secure_boot": False,
            "health_reasons": [], "health_state": "ok" if status == "running" else "inapplicable",
            "href": self._href(record), "id": record.id, "lifecycle_reasons": [],
            "lifecycle_state": {"pending": "pending", "deleting": "deleting", "failed": "failed"}.get(status, "stable"),
            "metadata_service": {"enabled": False, "protocol": "http"}, "name": record.name,
            "network_attachments": [self._attachment_ref(record)], "network_interfaces": [self._nic_ref(record)],
            "primary_network_attachment": self._attachment_ref(record),
            "primary_network_interface": self._nic_ref(record), "resource_group": GROUP, "resource_type": record.kind,
            "status": status, "status_reasons": self._reasons(record, status), "vpc": self._vpc_ref(record),
            "zone": self._zone_ref(record),
        }
        if record.kind == "bare_metal_server":
            disk_id = "0717-" + record.id[5:13] + "-disk"
            disk = {"href": f"{self._href(record)}/disks/{disk_id}", "id": disk_id, "name": "disk-0",
                    "resource_type": "bare_metal_server_disk"}
            return {
                **common,
                "bandwidth": 20000, "boot_target": disk,
                "cpu": {"architecture": "amd64", "core_count": 48, "socket_count": 2, "threads_per_core": 2},
                "disks": [{**disk, "created_at": record.created_at, "interface_type": "nvme", "size": 960,
                           "allowed_use": {"api_version": "2026-10-06", "bare_metal_server": "true",
                                           "instance": "true"}}],
                "firmware": {"update": "none"}, "memory": 384,
                "profile": {"href": f"{self.vpc_url}/bare_metal_servers/profiles/{record.profile}",
                            "name": record.profile, "resource_type": "bare_metal_server_profile"},
                "reservation_affinity": {"policy": "disabled", "pool": []},
                "trusted_platform_module": {"enabled": False, "mode": "disabled", "supported_modes": ["disabled"]},
            }
        boot_volume_id = record.boot_volume
        offering = {"catalog_offering": {"version": {
            "crn": f"crn:v1:bluemix:public:globalcatalog-collection:global::1082e7d2-5e2f-0a11-a3bc-f88a8e1931fc/"
                   f"version:{record.image}"}}} if record.catalog_offering else {}
        return {
            **common, **offering,
            "availability": {"class": "standard"}, "availability_policy": {"host_failure": "restart",
                                                                           "preemption": "stop"},
            "bandwidth": 4000,
            "boot_volume_attachment": {
                "device": {"id": f"{record.id[5:13]}-boot-device"},
                "href": f"{self._href(record)}/volume_attachments/{boot_volume_id}-attachment",
                "id": f"{boot_volume_id}-attachment", "name": "boot",
                "volume": {"crn": f"crn:v1:bluemix:public:is:{record.zone}:a/{ACCOUNT}::volume:{boot_volume_id}",
                           "href": f"{self.vpc_url}/volumes/{boot_volume_id}", "id": boot_volume_id,
                           "name": f"{record.name}-boot", "resource_type": "volume"}},
            "cluster_network_attachments": [], "confidential_compute_mode": "disabled", "disks": [],
            "image": {"crn": f"crn:v1:bluemix:public:is:{self.region}:a/{ACCOUNT}::image:{record.image}",
                      "href": f"{self.vpc_url}/images/{record.image}", "id": record.image,
                      "name": self.images.get(record.image, {}).get("name", record.image), "resource_type": "image"},
            "memory": 8, "profile": {"href": f"{self.vpc_url}/instance/profiles/{record.profile}",
                                     "name": record.profile, "resource_type": "instance_profile"},
            "metadata_service": {"enabled": False, "protocol": "http", "response_hop_limit": 1},
            "reservation_affinity": {"policy": "disabled", "pool": []}, "software_attachments": [],
            "startable": True, "threads_per_core": 2, "total_network_bandwidth": 3000,
            "total_volume_bandwidth": 1000, "vcpu": {"architecture": "amd64", "burst": {"limit": 200}, "count": 2, "manufacturer": "intel", "percentage": 100},
            "volume_attachments": [], "volume_bandwidth_qos_mode": "pooled",
        }

    def _vni(self, record: Record) -> dict:
        status = self._status(record)
        view = {
            **self._vni_ref(record), "allow_ip_spoofing": False, "auto_delete": True,
            "created_at": record.created_at, "enable_infrastructure_nat": True, "ips": [self._ip_view(record)],
            "lifecycle_state": "pending" if status == "pending" else "stable", "primary_ip": self._ip_view(record),
            "protocol_state_filtering_mode": "auto", "resource_group": GROUP, "security_groups": [],
            "subnet": self._subnet_ref(record), "vpc": self._vpc_ref(record), "zone": self._zone_ref(record),
            "target": {**self._attachment_ref(record)},
        }
        view["target"].pop("primary_ip"), view["target"].pop("subnet"), view["target"].pop("virtual_network_interface")
        if status != "pending":
            view["mac_address"] = record.mac
        return view

    def _image_view(self, image: dict) -> dict:
        return {
            "allowed_use": {"api_version": "2026-10-06", "bare_metal_server": "true", "instance": "true"},
            "catalog_offering": {"managed": False}, "created_at": "2026-01-01T00:00:00.000Z",
            "crn": f"crn:v1:bluemix:public:is:{self.region}:a/{ACCOUNT}::image:{image['id']}",
            "encryption": "none", "file": {}, "href": f"{self.vpc_url}/images/{image['id']}", "id": image["id"],
            "name": image["name"],
            "operating_system": {"allow_user_image_creation": False, "architecture": "amd64",
                                 "dedicated_host_only": False, "display_name": image["name"], "family": "iPXE",
                                 "href": f"{self.vpc_url}/operating_systems/{image['name']}", "name": image["name"],
                                 "user_data_format": image["user_data_format"], "vendor": "IBM", "version": "1"},
            "resource_group": GROUP, "resource_type": "image", "status": "available", "status_reasons": [],
            "user_data_format": image["user_data_format"], "visibility": image["visibility"],
            "zones": [{"href": f"{self.vpc_url}/regions/{self.region}/zones/{z}", "name": z} for z in sorted(self.zones)],
        }


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):  # the request log is `FakeCloud.log`
        pass


class _Obj:
    """A parsed nested prototype, read with attributes."""

    def __init__(self, data: dict):
        self.__dict__.update(data)


__all__ = ["FakeCloud", "API_KEY"]
