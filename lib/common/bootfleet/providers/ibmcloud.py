"""One retrying client for every IBM Cloud call: VPC, Global Tagging, DNS Services, and
the IAM token requests behind them.

`IbmCloud.from_settings(settings)` holds one `IAMAuthenticator` (so one IAM token,
refreshed by ibm-cloud-sdk-core, for every API) and one `Retrier`, and builds the SDK
clients: `vpc(region)`, `tagging()`, `dns()`. Every call a provider makes goes through
`Retrier.call`:

- 429: waits what `Retry-After` asks (seconds or an HTTP date; at most `MAX_WAIT`),
  plus a little jitter, then retries;
- 500, 502, 503, 504, a timeout or a dropped connection: exponential backoff with full
  jitter from `BOOTFLEET_IBM_BACKOFF_MS`, at most `BOOTFLEET_IBM_RETRIES` retries;
- anything else (400, 401, 403, 404, 409...) is not retried.

A failure becomes an `IbmApiError` carrying IBM's own words: the HTTP status, IBM's
error code (`errors[0].code`, or IAM's `errorCode`) and the trace id (`trace`, IAM's
`context.requestId`, or the `X-Request-Id` / `X-Global-Transaction-Id` header), so an
event or a log line can be matched to IBM's side by support.

ibm-cloud-sdk-core's own `enable_retries()` is not used: it has no jitter, and it
re-sends a POST after a timeout or a 5xx; a provider here can look a create up
(`before_retry`) before sending it again.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import random
import re
import time
from collections.abc import Callable
from typing import Any

from bootfleet import metrics
from bootfleet.errors import BadGatewayError, SettingsError
from bootfleet.settings import Settings

log = logging.getLogger(__name__)

RETRY_STATUSES = (429, 500, 502, 503, 504)
MAX_WAIT = 60.0  # longest single wait, even if Retry-After asks for more
TRACE_HEADERS = ("X-Request-Id", "X-Global-Transaction-Id", "X-Correlation-Id", "Transaction-Id")


class IbmApiError(BadGatewayError):
    """An IBM Cloud call failed. `http_status` is IBM's answer (0: no answer), `code` IBM's
    error code, `trace` IBM's trace id; the bootfleet answer for it is a 502."""

    def __init__(self, what: str, http_status: int, code: str, message: str, trace: str | None = None,
                 retryable: bool = False, wrapped: tuple[str, ...] = ()):
        details = [code] + ([f"HTTP {http_status}"] if http_status else []) + ([f"trace {trace}"] if trace else [])
        super().__init__(f"{what}: {message} ({', '.join(details)})")
        self.what, self.http_status, self.code, self.api_message = what, http_status, code, message
        self.trace, self.retryable = trace, retryable
        self.wrapped = wrapped  # the codes of an error IBM's front wrapped in this one (`bad_field`)

    def has_code(self, code: str) -> bool:
        """IBM's code is `code`, or the error it wraps has it: a bare metal create whose name
        is taken can come back as a 400 `bad_field` whose message is `Handler Error:
        Status=400, JSON={"errors":[{"code":"validation_unique_failed",...}],...}`
        (terraform-provider-ibm issue 5389)."""
        return code == self.code or code in self.wrapped

    @property
    def unauthorized(self) -> bool:
        """IAM refused the API key, or the API refused the token: no later call can work."""
        return self.http_status in (401, 403) or self.code.startswith("BXNIM")


def error_from(what: str, e: Exception, kind: type[IbmApiError] = IbmApiError) -> IbmApiError:
    """An SDK `ApiException` (or a requests timeout / connection error) as an IbmApiError."""
    import requests
    from ibm_cloud_sdk_core import ApiException

    if isinstance(e, requests.Timeout):
        return kind(what, 0, "timeout", f"timed out: {e}", retryable=True)
    if isinstance(e, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        return kind(what, 0, "connection_failed", f"connection failed: {e}", retryable=True)
    if isinstance(e, requests.RequestException):  # a bad URL, too many redirects...: not worth a retry
        return kind(what, 0, "request_failed", f"{type(e).__name__}: {e}")
    if not isinstance(e, ApiException):
        raise TypeError(f"not an IBM Cloud error: {e!r}")
    response = e.http_response
    body: Any = None
    if response is not None:
        try:
            body = response.json()
        except ValueError:
            body = None
    code, trace, wrapped = "error", None, ()
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code = errors[0].get("code") or code
            wrapped = wrapped_codes(errors[0].get("message"))
        else:  # IAM: {"errorCode", "errorMessage", "context": {"requestId"}}; or a flat {"code", "message"}
            code = body.get("errorCode") or body.get("code") or code
        trace = body.get("trace") or (body.get("context") or {}).get("requestId")
    if not trace and response is not None:
        trace = next((response.headers[h] for h in TRACE_HEADERS if response.headers.get(h)), None)
    status = e.status_code or 0
    return kind(what, status, str(code), e.message or str(e), trace, status in RETRY_STATUSES, wrapped)


_WRAPPED = re.compile(r"JSON=(\{.*\})\s*$", re.DOTALL)


def wrapped_codes(message: Any) -> tuple[str, ...]:
    """The error codes inside an error message that wraps another error's JSON body, as
    the VPC API's `bad_field` does: `Handler Error: Status=400, JSON={"errors":[{"code":
    "validation_unique_failed","message":"Another VNI with the requested name already
    exists"}],"trace":"..."}` (terraform-provider-ibm issue 5389). () when there is none."""
    match = _WRAPPED.search(message) if isinstance(message, str) else None
    if not match:
        return ()
    try:
        inner = json.loads(match.group(1))
    except ValueError:
        return ()
    errors = inner.get("errors") if isinstance(inner, dict) else None
    if not isinstance(errors, list):
        return ()
    return tuple(str(e["code"]) for e in errors if isinstance(e, dict) and e.get("code"))


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = datetime.datetime.strptime(value.strip(), "%a, %d %b %Y %H:%M:%S GMT").replace(
            tzinfo=datetime.timezone.utc)
    except ValueError:
        return None
    return max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())


class Retrier:
    """Calls with bounded retries on 429, 5xx, timeouts and dropped connections: the
    server's Retry-After (plus a little jitter), else exponential backoff with full jitter."""

    def __init__(self, retries: int = 5, backoff: float = 1.0, sleep: Callable[[float], None] = time.sleep,
                 token_manager: Any = None, max_wait: float = MAX_WAIT):
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_wait = max_wait
        self.sleep = sleep
        # After a failed token request the SDK makes every caller wait out 60 s before it
        # asks IAM again; a retry of ours should ask at once.
        self.token_manager = token_manager

    def wait(self, attempt: int, after: float | None) -> float:
        if after is not None:
            return min(self.max_wait, after + random.uniform(0, self.backoff / 2))
        return random.uniform(0, min(self.max_wait, self.backoff * 2 ** attempt))

    def call(self, what: str, fn: Callable[[], Any], before_retry: Callable[[], Any] | None = None,
             kind: type[IbmApiError] = IbmApiError) -> Any:
        """fn(), retried. `before_retry` runs before each retry; if it returns something,
        that is the answer (a create that had worked after all)."""
        import requests
        from ibm_cloud_sdk_core import ApiException

        operation = what.split(" ", 1)[0]  # create, get, list, tag, delete, ...: the metrics label
        for attempt in range(self.retries + 1):
            try:
                answer = fn()
                metrics.provider_call("ibm", operation, "ok")
                return answer
            except (ApiException, requests.RequestException) as e:
                error = error_from(what, e, kind)
                response = getattr(e, "http_response", None)
                after = retry_after(response.headers.get("Retry-After")) if response is not None else None
            if not error.retryable or attempt == self.retries:
                metrics.provider_call("ibm", operation, "error")
                log.warning("IBM Cloud call failed", extra={"what": what, "status": error.http_status,
                                                            "code": error.code, "trace": error.trace})
                raise error
            metrics.provider_call("ibm", operation, "retry")
            delay = self.wait(attempt, after)
            log.warning("IBM Cloud call failed; retrying", extra={
                "what": what, "status": error.http_status, "code": error.code, "trace": error.trace,
                "wait": round(delay, 3), "attempt": attempt + 1})
            self.sleep(delay)
            if self.token_manager is not None and not getattr(self.token_manager, "access_token", None):
                self.token_manager.request_time = 0
            if before_retry is not None:
                found = before_retry()
                if found is not None:
                    return found
        raise AssertionError("unreachable")


class IbmCloud:
    """One authenticator and one retrier for every IBM Cloud API bootfleet calls."""

    def __init__(self, authenticator, retrier: Retrier, settings: Settings):
        self.authenticator = authenticator
        self.retrier = retrier
        self.settings = settings

    @classmethod
    def from_settings(cls, settings: Settings, need_key: bool = True) -> "IbmCloud":
        authenticator, retrier = _session(settings.ibmcloud_api_key, settings.ibm_iam_url, settings.ibm_timeout,
                                          settings.ibm_retries, settings.ibm_backoff_ms, need_key)
        return cls(authenticator, retrier, settings)

    def _configure(self, client, url: str | None):
        if url:
            client.set_service_url(url.rstrip("/"))
        client.set_http_config({"timeout": self.settings.ibm_timeout})
        return client

    def vpc(self, region: str):
        """VpcV1 for a region: its own endpoint (the SDK's table), unless BOOTFLEET_VPC_URL
        points elsewhere (a local fake, a private endpoint)."""
        from ibm_vpc import VpcV1

        client = VpcV1(version=self.settings.vpc_api_version, authenticator=self.authenticator, generation=2)
        url = self.settings.vpc_url or VpcV1.get_service_url_for_region(region)
        if not url:
            raise SettingsError(f"no VPC endpoint known for region {region!r}; set BOOTFLEET_VPC_URL")
        return self._configure(client, url)

    def tagging(self):
        from ibm_platform_services import GlobalTaggingV1

        return self._configure(GlobalTaggingV1(authenticator=self.authenticator), self.settings.tagging_url)

    def dns(self):
        from ibm_cloud_networking_services import DnsSvcsV1

        return self._configure(DnsSvcsV1(authenticator=self.authenticator), self.settings.ibm_dns_url)


@functools.lru_cache(maxsize=8)
def _session(api_key: str | None, iam_url: str | None, timeout: int, retries: int, backoff_ms: int,
             need_key: bool) -> tuple[Any, Retrier]:
    """One authenticator (one IAM token) and its retrier per key and tuning, per process."""
    from ibm_cloud_sdk_core.authenticators import IAMAuthenticator, NoAuthAuthenticator

    if api_key:
        authenticator = IAMAuthenticator(api_key, url=iam_url) if iam_url else IAMAuthenticator(api_key)
        # The IAM token request has its own timeout (60 s in the SDK); an IAM that does not
        # answer must not hold a pass (or cleanup) for minutes.
        authenticator.token_manager.http_config = {"timeout": timeout}
        token_manager = authenticator.token_manager
    elif need_key:
        raise SettingsError("BOOTFLEET_IBMCLOUD_API_KEY is not set; IBM Cloud calls need an IBM Cloud API key")
    else:
        authenticator, token_manager = NoAuthAuthenticator(), None  # a local endpoint without IAM
    return authenticator, Retrier(retries, backoff_ms / 1000.0, token_manager=token_manager)
