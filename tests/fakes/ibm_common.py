"""What the local IBM Cloud fakes share: injected faults, IBM's error body, and the IAM
token endpoint.

Faults are given at construction (`faults=[{...}]`), from Python (`fake.inject(...)`),
or over HTTP, so a test that runs bootfleet in another process can inject them too:

    POST   /_fake/faults   {"method": "GET", "path": "^/v1/instances$", "status": 503, "times": 2}
    GET    /_fake/faults   every fault with its `hits`
    DELETE /_fake/faults   forget them all

A fault answers the next `times` matching requests (after letting `skip` pass) with
`status` and IBM's error body (`code`, `message`), with `Retry-After: retry_after` if
given; `timeout=s` answers 504 after s seconds instead (the client has given up by
then); `apply=True` lets the request take effect first (a create whose answer is lost).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field

import jwt
from werkzeug.wrappers import Request, Response

CONTROL = "/_fake/faults"
DEFAULT_WORDS = {429: ("too_many_requests", "Too many requests; slow down"),
                 503: ("service_unavailable", "Service unavailable"),
                 504: ("gateway_timeout", "The request timed out")}


@dataclass
class Fault:
    method: str
    path: str
    status: int = 500
    times: int = 1
    retry_after: int | None = None
    timeout: float | None = None
    apply: bool = False
    code: str = ""
    message: str = ""
    skip: int = 0
    hits: int = 0
    pattern: re.Pattern | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        self.method = self.method.upper()
        self.pattern = re.compile(self.path)

    def view(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "pattern"}


class Faults:
    """The faults of one fake, matched under its lock."""

    FIELDS = frozenset({"method", "path", "status", "times", "retry_after", "timeout", "apply", "code", "message",
                        "skip"})

    def __init__(self, initial: list[dict] | None = None):
        self.lock = threading.Lock()
        self.items: list[Fault] = []
        for spec in initial or []:
            self.add(**spec)

    def add(self, **spec) -> Fault:
        unknown = set(spec) - self.FIELDS
        if unknown or "method" not in spec or "path" not in spec:
            raise ValueError(f"a fault takes method, path and {sorted(self.FIELDS - {'method', 'path'})};"
                             f" unknown: {sorted(unknown)}")
        fault = Fault(**spec)
        with self.lock:
            self.items.append(fault)
        return fault

    def clear(self) -> None:
        with self.lock:
            self.items.clear()

    def __iter__(self):
        with self.lock:
            return iter(list(self.items))

    def match(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.items:
                if fault.hits < fault.times and fault.method == method and fault.pattern.search(path):
                    if fault.skip:
                        fault.skip -= 1
                        continue
                    fault.hits += 1
                    return fault
        return None

    def control(self, request: Request) -> Response:
        """The HTTP side: POST adds one, GET lists, DELETE clears."""
        if request.method == "POST":
            try:
                spec = json.loads(request.get_data() or b"{}")
                fault = self.add(**spec)
            except (ValueError, TypeError) as e:
                return json_response({"error": str(e)}, 400)
            return json_response(fault.view(), 201)
        if request.method == "DELETE":
            self.clear()
            return Response(status=204)
        return json_response([f.view() for f in self])


def json_response(data, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json", headers=headers)


def error_body(status: int, code: str, message: str, more_info: str | None = None, target: str | None = None) -> dict:
    """IBM's error body: {"errors": [{"code", "message", "more_info"?, "target"?}], "trace", "status_code"}."""
    error = {"code": code, "message": message}
    if more_info:
        error["more_info"] = more_info
    if target:
        error["target"] = {"name": target, "type": "field"}
    return {"errors": [error], "trace": str(uuid.uuid4()), "status_code": status}


def fault_response(fault: Fault, more_info: str | None = None) -> Response:
    """What a fault answers (after its `timeout`, if it has one)."""
    if fault.timeout:
        time.sleep(fault.timeout)
        code, message = DEFAULT_WORDS[504]
        return json_response(error_body(504, code, message, more_info), 504)
    code, message = DEFAULT_WORDS.get(fault.status, ("internal_error", "An internal error occurred; try again"))
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    body = error_body(fault.status, fault.code or code, fault.message or message, more_info)
    return json_response(body, fault.status, headers)


class Iam:
    """The IAM token endpoint: POST /identity/token, grant type apikey, answering a JWT.
    A refusal has IAM's own shape: {"errorCode", "errorMessage", "context": {"requestId"}}."""

    def __init__(self, api_key: str, account: str = "a1b2c3d4e5f60718293a4b5c6d7e8f90"):
        self.api_key = api_key
        self.account = account
        self.tokens: set[str] = set()
        self.lock = threading.Lock()

    @staticmethod
    def refusal(message: str, status: int = 400) -> Response:
        request_id = str(uuid.uuid4())
        return json_response({"context": {"requestId": request_id, "requestType": "incoming.OIDC_Token",
                                          "url": "https://iam.cloud.ibm.com", "locale": "en_US"},
                              "errorCode": "BXNIM0415E", "errorMessage": message}, status)

    def token(self, request: Request) -> Response:
        form = request.form
        if form.get("grant_type") != "urn:ibm:params:oauth:grant-type:apikey":
            return self.refusal("Provided grant type is not supported")
        if form.get("apikey") != self.api_key:
            return self.refusal("Provided API key could not be found.")
        now = int(time.time())
        token = jwt.encode({"iat": now, "exp": now + 3600, "sub": "fake", "account": {"bss": self.account},
                            "jti": uuid.uuid4().hex},
                           "fake-iam-signing-key-for-tests-only-0123456789", algorithm="HS256")
        with self.lock:
            self.tokens.add(token)
        return json_response({"access_token": token, "refresh_token": "not_supported", "token_type": "Bearer",
                              "expires_in": 3600, "expiration": now + 3600, "scope": "ibm openid"})

    def valid(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        with self.lock:
            return scheme == "Bearer" and token in self.tokens
