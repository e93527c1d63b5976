"""The VPC provider interface: where a deployment's servers come from.

`Provider` is what the provisioner (bootfleet.provision) uses: create, get, find by
name, list owned, delete, reboot. Backends: `ibm` (IBM Cloud VPC, bare metal servers
and virtual server instances) and `local` (QEMU machines on this host).
"""

from __future__ import annotations

import abc
import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

from bootfleet.providers.ibmcloud import IbmApiError

KINDS = ("bare_metal", "instance")
OWNER_TAG = "bootfleet"


def deployment_tag(deployment: str) -> str:
    """The user tag that says "bootfleet owns this for that deployment"."""
    return f"bootfleet-deployment:{deployment}"


@dataclass(frozen=True)
class ServerSpec:
    """What to create: one server for one node."""

    name: str
    deployment: str
    zone: str
    vpc: str
    subnet: str
    profile: str
    image: str
    user_data: str
    keys: tuple[str, ...] = ()
    resource_group: str | None = None
    base_url: str = ""  # bootfleet's base URL (the local provider forwards its VMs to it)


@dataclass
class Server:
    """A server as bootfleet needs to see it, whichever kind it is."""

    id: str
    name: str
    status: str  # pending, running, failed, deleting, stopped, ...
    crn: str | None = None
    reasons: list[str] = field(default_factory=list)
    mac: str | None = None
    ip: str | None = None
    created_at: datetime.datetime | None = None
    vni_id: str | None = None


class VpcError(IbmApiError):
    """A VPC (or tagging, or IAM) call failed: `api_message` is the API's own words, `code`
    and `trace` IBM's error code and trace id (providers/ibmcloud.py)."""


class Provider(abc.ABC):
    """Servers for one deployment's placement."""

    name = "provider"
    # Whether its servers boot with bootfleet's user data, so can present an enrolment
    # secret (provision/fleet.server_user_data): bare metal and local VMs can; an IBM VSI
    # boots a custom image that cannot read user data, and comes in by boot network.
    enrols = False

    @abc.abstractmethod
    def create(self, spec: ServerSpec) -> Server:
        """Create the server (or return the one a lost earlier attempt made)."""

    @abc.abstractmethod
    def get(self, server_id: str) -> Server | None:
        """The server, or None if it no longer exists."""

    @abc.abstractmethod
    def find(self, name: str) -> Server | None:
        """The server with this exact name, or None."""

    @abc.abstractmethod
    def list_owned(self, deployment: str, known: frozenset[str] = frozenset()) -> list[Server]:
        """Every server this deployment owns; `known` ids (recorded in the database)
        count as owned without asking again."""

    @abc.abstractmethod
    def is_owned(self, server: Server, deployment: str) -> bool:
        """Whether this server carries the deployment's ownership tag."""

    @abc.abstractmethod
    def claim(self, server: Server, deployment: str) -> None:
        """Mark the server as owned (tag it)."""

    @abc.abstractmethod
    def delete(self, server_id: str) -> bool:
        """Start deleting; False if it was already gone."""

    def boot_url(self, base_url: str) -> str:
        """bootfleet's base URL as this provider's servers reach it (their user data)."""
        return base_url

    @abc.abstractmethod
    def reboot(self, server_id: str) -> None:
        """Restart the server (it network-boots again)."""

    def reinstall(self, server_id: str, user_data: str, wait: float = 0) -> str:
        """Make the server network-boot again with this user data, to install afresh.
        Answers "restarted", "reinitialized" (its boot disk and user data replaced, the
        server starting), or "stopping" (not stopped yet: `resume_reinstall` finishes it).
        Here: a restart; IBM Cloud (bare metal and instances) overrides it with a stop and a
        reinitialization, which replaces the boot disk an installer wrote to."""
        self.reboot(server_id)
        return "restarted"

    def resume_reinstall(self, server_id: str, user_data: str | Callable[[], str]) -> str | None:
        """Finish a reinstall that answered "stopping", once the server is stopped; None
        while it is not (or nothing is left to finish). `user_data` may be a function that
        builds it, called only when it is needed."""
        return None


def region_of(zone: str) -> str:
    """us-south-1 -> us-south."""
    return zone.rsplit("-", 1)[0]
