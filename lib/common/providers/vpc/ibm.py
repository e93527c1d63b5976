"""The `ibm` VPC provider.

`IbmProvider` implements `Provider` (base.py) over the ibm-vpc
SDK (`VpcV1`, IAM API key, pinned API `version`, `generation=2`) for bare metal
servers (native iPXE: `initialization.user_data` is the chainloader script, on an
image whose `user_data_format` is `ipxe`) and virtual server instances (a custom
iPXE image; `user_data` carries the same script). Ownership is two things: the
database (node.instance_id) and user tags attached with the Global Tagging API,
because `list_instances` and `list_bare_metal_servers` cannot filter by tag.

Retries are ours, not ibm-cloud-sdk-core's `enable_retries()`: that one is urllib3's
Retry with exponential backoff and Retry-After, but without jitter, and it re-sends a
POST after a timeout or a 5xx, which for a create can answer "name already used" or
worse. Here a retried create first looks the server up by name.
"""

from __future__ import annotations

import datetime
import logging
import random
import re
import time
from collections.abc import Callable
from typing import Any

import requests
from ibm_cloud_sdk_core import ApiException
from ibm_cloud_sdk_core.authenticators import IAMAuthenticator

from bootfleet import metrics
from bootfleet.errors import SettingsError
from bootfleet.providers.vpc.base import (
    KINDS,
    OWNER_TAG,
    RETRY_STATUSES,
    Provider,
    Server,
    ServerSpec,
    VpcError,
    deployment_tag,
)
from bootfleet.settings import Settings, get_settings

log = logging.getLogger(__name__)

API_VERSION = "2026-10-06"  # the VPC API behaviour this code was written against
MAX_WAIT = 60.0  # longest single wait, even if Retry-After asks for more


def vpc_error(what: str, e: ApiException) -> VpcError:
    """The SDK's ApiException as a VpcError carrying the API's own error code and words."""
    code = "error"
    body = None
    try:
        body = e.http_response.json() if e.http_response is not None else None
    except ValueError:
        pass
    if isinstance(body, dict) and body.get("errors"):
        code = body["errors"][0].get("code") or code
    elif isinstance(body, dict) and body.get("errorCode"):  # IAM
        code = body["errorCode"]
    status = e.status_code or 0
    return VpcError(what, status, code, e.message or str(e), status in RETRY_STATUSES)


class Retrier:
    """Calls with retries on 429, 5xx, timeouts and dropped connections: exponential
    backoff with full jitter, or the server's Retry-After (plus a little jitter)."""

    def __init__(self, retries: int = 5, backoff: float = 1.0, sleep: Callable[[float], None] = time.sleep,
                 token_manager: Any = None):
        self.retries = retries
        self.backoff = backoff
        self.sleep = sleep
        # After a failed token request the SDK makes every caller wait out 60 s before it
        # asks IAM again; a retry of ours should ask at once.
        self.token_manager = token_manager

    def wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(MAX_WAIT, retry_after + random.uniform(0, self.backoff / 2))
        return random.uniform(0, min(MAX_WAIT, self.backoff * 2 ** attempt))

    def call(self, what: str, fn: Callable[[], Any], before_retry: Callable[[], Any] | None = None) -> Any:
        """fn(), retried. `before_retry` runs before each retry; if it returns something,
        that is the answer (a create that had worked after all)."""
        operation = what.split(" ", 1)[0]  # create, get, list, tag, delete, ...: the metrics label
        for attempt in range(self.retries + 1):
            retry_after = None
            try:
                answer = fn()
                metrics.provider_call("ibm", operation, "ok")
                return answer
            except ApiException as e:
                error = vpc_error(what, e)
                if e.http_response is not None:
                    retry_after = _retry_after(e.http_response.headers.get("Retry-After"))
            except (requests.Timeout, requests.ConnectionError) as e:
                kind = "timed out" if isinstance(e, requests.Timeout) else "connection failed"
                error = VpcError(what, 0, "timeout", f"{kind}: {e}", retryable=True)
            if not error.retryable or attempt == self.retries:
                metrics.provider_call("ibm", operation, "error")
                raise error
            metrics.provider_call("ibm", operation, "retry")
            delay = self.wait(attempt, retry_after)
            log.warning("vpc call failed; retrying", extra={"what": what, "error": str(error), "wait": round(delay, 2)})
            self.sleep(delay)
            if self.token_manager is not None and not getattr(self.token_manager, "access_token", None):
                self.token_manager.request_time = 0
            if before_retry is not None:
                found = before_retry()
                if found is not None:
                    return found
        raise AssertionError("unreachable")


def _retry_after(value: str | None) -> float | None:
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


def _time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None

class IbmProvider(Provider):
    """IBM Cloud VPC through the ibm-vpc SDK; `kind` is bare_metal or instance."""

    name = "ibm"

    def __init__(self, kind: str, region: str, vpc_client, tagging_client, retrier: Retrier | None = None,
                 vpc_id: str | None = None):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.kind = kind
        self.region = region
        self.vpc_id = vpc_id
        self.vpc = vpc_client
        self.tagging = tagging_client
        self.retrier = retrier or Retrier()

    @classmethod
    def from_settings(cls, kind: str, region: str, vpc_id: str | None = None,
                      settings: Settings | None = None) -> "IbmProvider":
        from ibm_platform_services import GlobalTaggingV1
        from ibm_vpc import VpcV1

        settings = settings or get_settings()
        api_key = settings.ibmcloud_api_key
        if not api_key:
            raise SettingsError("BOOTFLEET_IBMCLOUD_API_KEY is not set; the ibm provider needs an IBM Cloud API key")
        authenticator = IAMAuthenticator(api_key, url=settings.ibm_iam_url) if settings.ibm_iam_url \
            else IAMAuthenticator(api_key)
        vpc = VpcV1(version=settings.vpc_api_version, authenticator=authenticator, generation=2)
        url = settings.vpc_url or VpcV1.get_service_url_for_region(region)
        if not url:
            raise SettingsError(f"no VPC endpoint known for region {region!r}; set BOOTFLEET_VPC_URL")
        vpc.set_service_url(url.rstrip("/"))
        tagging = GlobalTaggingV1(authenticator=authenticator)
        if settings.tagging_url:
            tagging.set_service_url(settings.tagging_url.rstrip("/"))
        for client in (vpc, tagging):
            client.set_http_config({"timeout": settings.vpc_timeout})
        # The IAM token request has its own timeout (60 s in the SDK); an IAM that does not
        # answer must not hold a pass (or cleanup) for minutes.
        authenticator.token_manager.http_config = {"timeout": settings.vpc_timeout}
        retrier = Retrier(settings.vpc_retries, settings.vpc_backoff_ms / 1000.0,
                          token_manager=authenticator.token_manager)
        return cls(kind, region, vpc, tagging, retrier, vpc_id)

    # --- shapes ----------------------------------------------------------------------------

    @property
    def _what(self) -> str:
        return "bare metal server" if self.kind == "bare_metal" else "instance"

    def _server(self, data: dict) -> Server:
        attachment = data.get("primary_network_attachment") or {}
        ip = ((attachment.get("primary_ip") or {}).get("address")) or None
        reasons = [f"{r.get('code')}: {r.get('message')}" for r in data.get("status_reasons") or []]
        return Server(
            id=data["id"], name=data["name"], status=data.get("status", "unknown"), crn=data.get("crn"),
            reasons=reasons, ip=None if ip in (None, "0.0.0.0") else ip, created_at=_time(data.get("created_at")),
            vni_id=(attachment.get("virtual_network_interface") or {}).get("id"),
        )

    def prototype(self, spec: ServerSpec) -> dict:
        """The create request's body, as the API reference describes it."""
        vni = {"name": f"{spec.name}-vni", "subnet": {"id": spec.subnet}, "auto_delete": True}
        body: dict[str, Any] = {
            "name": spec.name,
            "profile": {"name": spec.profile},
            "zone": {"name": spec.zone},
            "vpc": {"id": spec.vpc},
        }
        if spec.resource_group:
            body["resource_group"] = {"id": spec.resource_group}
        keys = [{"id": k} for k in spec.keys]
        if self.kind == "bare_metal":
            body["initialization"] = {"image": {"id": spec.image}, "keys": keys, "user_data": spec.user_data}
            body["primary_network_attachment"] = {"name": "eth0", "interface_type": "pci",
                                                  "virtual_network_interface": vni}
        else:
            body["image"] = {"id": spec.image}
            body["keys"] = keys
            body["user_data"] = spec.user_data
            body["primary_network_attachment"] = {"name": "eth0", "virtual_network_interface": vni}
        return body

    # --- calls -----------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], Any], before_retry: Callable[[], Any] | None = None) -> Any:
        return self.retrier.call(what, lambda: fn().get_result(), before_retry)

    def create(self, spec: ServerSpec) -> Server:
        from ibm_vpc import vpc_v1

        body = self.prototype(spec)
        if self.kind == "bare_metal":
            model = vpc_v1.BareMetalServerPrototypeBareMetalServerByNetworkAttachment.from_dict(body)
            send = lambda: self.vpc.create_bare_metal_server(model)  # noqa: E731
        else:
            model = vpc_v1.InstancePrototypeInstanceByImageInstanceByImageInstanceByNetworkAttachment.from_dict(body)
            send = lambda: self.vpc.create_instance(model)  # noqa: E731

        def made_after_all():
            found = self.find(spec.name)
            if found is not None:
                log.info("create was retried, but the server exists; using it", extra={"server": found.id})
            return found

        try:
            data = self._call(f"create {self._what} {spec.name}", send, before_retry=made_after_all)
        except VpcError as e:
            if e.status == 409 or "duplicate" in e.code:
                found = self.find(spec.name)
                if found is not None:
                    return found
            raise
        return data if isinstance(data, Server) else self._server(data)

    def get(self, server_id: str) -> Server | None:
        fn = self.vpc.get_bare_metal_server if self.kind == "bare_metal" else self.vpc.get_instance
        try:
            server = self._server(self._call(f"get {self._what} {server_id}", lambda: fn(server_id)))
        except VpcError as e:
            if e.status == 404:
                return None
            raise
        if server.vni_id and server.status not in ("pending", "deleting"):
            server.mac = self._mac(server.vni_id)
        return server

    def _mac(self, vni_id: str) -> str | None:
        try:
            vni = self._call(f"get virtual network interface {vni_id}",
                             lambda: self.vpc.get_virtual_network_interface(vni_id))
        except VpcError as e:
            if e.status == 404:
                return None
            raise
        mac = vni.get("mac_address")
        return mac.lower() if mac else None

    def _pages(self, name: str | None = None, vpc_id: str | None = None) -> list[dict]:
        from ibm_vpc.vpc_v1 import BareMetalServersPager, InstancesPager

        pager_class = BareMetalServersPager if self.kind == "bare_metal" else InstancesPager
        pager = pager_class(client=self.vpc, limit=100, name=name, vpc_id=vpc_id)
        items: list[dict] = []
        while pager.has_next():
            items += self.retrier.call(f"list {self._what}s", pager.get_next)
        return items

    def find(self, name: str) -> Server | None:
        for data in self._pages(name=name):
            if data["name"] == name:
                return self._server(data)
        return None

    def _tags(self, server: Server) -> set[str]:
        if not server.crn:
            return set()
        result = self._call(f"list tags of {server.name}", lambda: self.tagging.list_tags(
            attached_to=server.crn, tag_type="user", providers=["ghost"], limit=1000))
        return {item["name"] for item in result.get("items", [])}

    def is_owned(self, server: Server, deployment: str) -> bool:
        return deployment_tag(deployment) in self._tags(server)

    def claim(self, server: Server, deployment: str) -> None:
        from ibm_platform_services.global_tagging_v1 import Resource

        result = self._call(f"tag {server.name}", lambda: self.tagging.attach_tag(
            resources=[Resource(resource_id=server.crn)], tag_names=[OWNER_TAG, deployment_tag(deployment)],
            tag_type="user"))
        failed = [r for r in result.get("results", []) if r.get("is_error")]
        if failed:
            raise VpcError(f"tag {server.name}", 0, "tagging_failed", f"the tagging API refused {server.crn}")

    def list_owned(self, deployment: str, known: frozenset[str] = frozenset()) -> list[Server]:
        """Servers in the VPC named like this deployment's nodes and tagged for it."""
        pattern = re.compile(rf"^{re.escape(deployment)}-\d+$")
        owned = []
        for data in self._pages(vpc_id=self.vpc_id):
            if not pattern.match(data["name"]):
                continue
            server = self._server(data)
            if server.id in known or self.is_owned(server, deployment):
                owned.append(server)
        return owned

    def delete(self, server_id: str) -> bool:
        fn = self.vpc.delete_bare_metal_server if self.kind == "bare_metal" else self.vpc.delete_instance
        try:
            self._call(f"delete {self._what} {server_id}", lambda: fn(server_id))
        except VpcError as e:
            if e.status == 404:
                return False
            raise
        return True

    def reboot(self, server_id: str) -> None:
        if self.kind == "bare_metal":
            self._call(f"restart bare metal server {server_id}", lambda: self.vpc.restart_bare_metal_server(server_id))
        else:
            self._call(f"reboot instance {server_id}",
                       lambda: self.vpc.create_instance_action(server_id, "reboot", force=True))

    def ipxe_image(self) -> str:
        """The first available image with user_data_format ipxe (for bare metal)."""
        from ibm_vpc.vpc_v1 import ImagesPager

        pager = ImagesPager(client=self.vpc, limit=100, user_data_format=["ipxe"], status=["available"])
        while pager.has_next():
            for image in self.retrier.call("list ipxe images", pager.get_next):
                return image["id"]
        raise VpcError("list ipxe images", 0, "not_found",
                       "no image with user_data_format ipxe in this region; set BOOTFLEET_VPC_IPXE_IMAGE")
