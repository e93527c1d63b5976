"""The `ibm` VPC provider.

`IbmProvider` implements `Provider` (base.py) over the ibm-vpc SDK (`VpcV1`, IAM API key,
pinned API `version`, `generation=2`) for bare metal servers (native iPXE:
`initialization.user_data` is the chainloader script, on an image whose
`user_data_format` is `ipxe`) and virtual server instances (a custom iPXE image;
`user_data` carries the same script). Ownership is two things: the database
(node.instance_id) and user tags attached with the Global Tagging API, because
`list_instances` and `list_bare_metal_servers` cannot filter by tag.

Every call goes through the one retrying client (providers/ibmcloud.py); a retried
create first looks the server up by name, and a create refused because the name is
taken (`validation_unique_failed`, a 400, bare or wrapped in a `bad_field`) is answered
with the server of that name.

A reinstall stops the server and reinitializes it (docs/vpc.md, "Reinstalling"): bare
metal with `PUT /bare_metal_servers/{id}/initialization`, an instance with `POST
/instances/{id}/reinitialize` (ibm-vpc >= 0.36.0, API 2026-07-21), which replaces its
boot volume from the iPXE image; a restart would boot whatever an installer wrote there.
"""

from __future__ import annotations

import datetime
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from bootfleet.providers.ibmcloud import IbmCloud, Retrier
from bootfleet.providers.vpc.base import (
    KINDS,
    OWNER_TAG,
    Provider,
    Server,
    ServerSpec,
    VpcError,
    deployment_tag,
)
from bootfleet.settings import Settings, get_settings

log = logging.getLogger(__name__)

API_VERSION = "2026-10-06"  # the VPC API behaviour this code was written against
NAME_TAKEN = ("validation_unique_failed",)  # the VPC API's code for "that name is in use" (a 400), maybe
# wrapped in a `bad_field` (IbmApiError.has_code; terraform-provider-ibm issue 5389)
POLL_SECONDS = 2.0  # how often a reinstall looks whether its server has stopped
REINIT_FAILED = "cannot_reinitialize"  # a bare metal server's status reason after a failed reinitialization


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
        self.enrols = kind == "bare_metal"  # bare metal's iPXE runs the user data; a VSI's image cannot
        self.region = region
        self.vpc_id = vpc_id
        self.vpc = vpc_client
        self.tagging = tagging_client
        self.retrier = retrier or Retrier()

    @classmethod
    def from_settings(cls, kind: str, region: str, vpc_id: str | None = None,
                      settings: Settings | None = None) -> "IbmProvider":
        cloud = IbmCloud.from_settings(settings or get_settings())
        return cls(kind, region, cloud.vpc(region), cloud.tagging(), cloud.retrier, vpc_id)

    # --- shapes ----------------------------------------------------------------------------

    @property
    def _what(self) -> str:
        return "bare metal server" if self.kind == "bare_metal" else "instance"

    @property
    def _resource(self) -> str:  # the API's resource_type
        return "bare_metal_server" if self.kind == "bare_metal" else "instance"

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
        # No name for the virtual network interface: VNI names are unique in the VPC, and a
        # deleting server's VNI would refuse a new server of the same node its name.
        vni = {"subnet": {"id": spec.subnet}, "auto_delete": True}
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
        return self.retrier.call(what, lambda: fn().get_result(), before_retry, kind=VpcError)

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
            if any(e.has_code(code) for code in NAME_TAKEN):  # also wrapped in a bad_field
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
            if e.http_status == 404:
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
            if e.http_status == 404:
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
            items += self.retrier.call(f"list {self._what}s", pager.get_next, kind=VpcError)
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
            if e.http_status == 404:
                return False
            raise
        return True

    def reboot(self, server_id: str) -> None:
        if self.kind == "bare_metal":
            self._call(f"restart bare metal server {server_id}", lambda: self.vpc.restart_bare_metal_server(server_id))
        else:
            self._call(f"reboot instance {server_id}",
                       lambda: self.vpc.create_instance_action(server_id, "reboot", force=True))

    def reinstall(self, server_id: str, user_data: str, wait: float = 0) -> str:
        """Make the server network-boot its iPXE image again. A restart is not enough: an
        installer has written its OS to the boot disk (an instance's boot volume, a bare
        metal server's disk), and a restart boots that. So the server is stopped, then
        reinitialized (`resume_reinstall`) with its image, keys and the new user data, and
        the API starts it. The stop takes a while: this waits up to `wait` seconds for it,
        then answers "stopping", and `resume_reinstall` (the next provisioning pass)
        finishes. A bare metal server whose earlier reinitialization failed (`failed`, with
        the status reason `cannot_reinitialize`) is reinitialized again at once."""
        what = f"reinstall {self._what} {server_id}"
        server = self._must_get(server_id, what)
        if server.status == "running":
            self._stop(server_id)
        elif server.status not in ("stopping", "stopped") and not self._reinit_failed(server):
            raise VpcError(what, 409, f"{self._resource}_busy",
                           f"the server is {server.status}; reinstall it once it is running or stopped")
        deadline = time.monotonic() + wait
        while True:
            done = self.resume_reinstall(server_id, user_data)
            if done is not None:
                return done
            if time.monotonic() >= deadline:
                return "stopping"
            time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))

    def _stop(self, server_id: str) -> None:
        if self.kind == "bare_metal":
            self._call(f"stop bare metal server {server_id}",
                       lambda: self.vpc.stop_bare_metal_server(server_id, "hard"))
        else:
            self._call(f"stop instance {server_id}",
                       lambda: self.vpc.create_instance_action(server_id, "stop", force=True))

    def _start(self, server_id: str) -> None:
        if self.kind == "bare_metal":
            self._call(f"start bare metal server {server_id}", lambda: self.vpc.start_bare_metal_server(server_id))
        else:
            self._call(f"start instance {server_id}",
                       lambda: self.vpc.create_instance_action(server_id, "start"))

    def _reinit_failed(self, server: Server) -> bool:
        """A bare metal server whose reinitialization failed (status `failed`, reason
        `cannot_reinitialize`): reinitialized again, without a stop it could not take. Should
        the API refuse, its error is the node's event."""
        return self.kind == "bare_metal" and server.status == "failed" and any(
            r.startswith(REINIT_FAILED + ":") for r in server.reasons)

    def resume_reinstall(self, server_id: str, user_data: str | Callable[[], str]) -> str | None:
        """Reinitialize a stopped server (its image and keys, new user data); the API starts
        it afterwards. None while it is not stopped (or nothing is left to do)."""
        what = f"reinitialize {self._what} {server_id}"
        if self.kind == "bare_metal":
            server = self._must_get(server_id, what)
            instance = None
        else:
            instance = self._get_instance(server_id, what)
            server = self._server(instance)
        if server.status != "stopped" and not self._reinit_failed(server):
            return None
        data = user_data() if callable(user_data) else user_data
        if self.kind == "bare_metal":
            current = self._call(f"get initialization of bare metal server {server_id}",
                                 lambda: self.vpc.get_bare_metal_server_initialization(server_id))
            image = {"id": current["image"]["id"]}
            keys = [{"id": k["id"]} for k in current.get("keys") or []]
            send = lambda: self.vpc.replace_bare_metal_server_initialization(  # noqa: E731
                server_id, image, keys, user_data=data)
        else:
            send = self._instance_reinitialization(server_id, instance, data, what)
        before = server.status

        def went_through():  # a retried reinitialization whose answer was lost: the server moved on
            now = self.get(server_id)
            return "reinitialized" if now is not None and now.status != before else None

        self._call(what, send, before_retry=went_through)
        # The API starts the server itself once it is reinitialized; one left stopped is started.
        if (self.get(server_id) or server).status == "stopped":
            self._start(server_id)
        return "reinitialized"

    def _get_instance(self, server_id: str, what: str) -> dict:
        try:
            return self._call(f"get instance {server_id}", lambda: self.vpc.get_instance(server_id))
        except VpcError as e:
            if e.http_status == 404:
                raise VpcError(what, 404, "instance_not_found", f"no instance {server_id}") from None
            raise

    def _instance_reinitialization(self, server_id: str, instance: dict, data: str, what: str) -> Callable[[], Any]:
        """`POST /instances/{id}/reinitialize` (ibm-vpc >= 0.36.0) by image: the instance's own
        image (the custom iPXE image it was made from), its keys, the new user data. Keys and
        user data left out would be gone (the prototype's words); the boot volume is replaced
        from the image, so the server boots iPXE again."""
        from ibm_vpc import vpc_v1

        if instance.get("catalog_offering"):
            raise VpcError(what, 400, "catalog_offering_instance",
                           f"instance {server_id} was provisioned from a catalog offering, which the API cannot"
                           " reinitialize; delete it and let a provisioning pass create it again")
        image = (instance.get("image") or {}).get("id")
        if not image:
            raise VpcError(what, 400, "no_image", f"instance {server_id} has no image to reinitialize it with")
        current = self._call(f"get initialization of instance {server_id}",
                             lambda: self.vpc.get_instance_initialization(server_id))
        prototype = vpc_v1.InstanceReinitializePrototypeInstanceReinitializeByImage(
            image=vpc_v1.ImageIdentityById(id=image),
            keys=[vpc_v1.KeyIdentityById(id=k["id"]) for k in current.get("keys") or []],
            user_data=data)
        return lambda: self.vpc.create_instance_reinitialization(server_id, prototype)

    def _must_get(self, server_id: str, what: str) -> Server:
        server = self.get(server_id)
        if server is None:
            raise VpcError(what, 404, f"{self._resource}_not_found", f"no {self._what} {server_id}")
        return server

    def ipxe_image(self) -> str:
        """The first available image with user_data_format ipxe (for bare metal)."""
        from ibm_vpc.vpc_v1 import ImagesPager

        pager = ImagesPager(client=self.vpc, limit=100, user_data_format=["ipxe"], status=["available"])
        while pager.has_next():
            for image in self.retrier.call("list ipxe images", pager.get_next, kind=VpcError):
                return image["id"]
        raise VpcError("list ipxe images", 0, "not_found",
                       "no image with user_data_format ipxe in this region; set BOOTFLEET_VPC_IPXE_IMAGE")
