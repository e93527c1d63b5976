"""The operator API's request bodies. Unknown fields are refused, every field
is checked with the rules in validation.py, and errors name the field."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, model_validator

from bootfleet import validation
from bootfleet.boot.render import check_template
from bootfleet.inventory import check_requirements


def _wrap(check):
    def run(value):
        try:
            return check(value)
        except validation.ValidationError as e:
            # pydantic adds the field name itself; keep only what was wrong.
            raise ValueError(str(e).split(": ", 1)[-1]) from None

    return run


Name = Annotated[str, AfterValidator(_wrap(validation.check_name))]
Hostname = Annotated[str, AfterValidator(_wrap(validation.check_hostname))]
Mac = Annotated[str, AfterValidator(_wrap(validation.normalize_mac))]
Uuid = Annotated[str, AfterValidator(_wrap(validation.normalize_uuid))]
Labels = Annotated[dict[str, str], AfterValidator(_wrap(validation.check_labels))]
LabelKey = Annotated[str, AfterValidator(_wrap(lambda v: validation.check_labels({v: ""}, "label key") and v))]
Serial = Annotated[str, AfterValidator(_wrap(validation.check_serial))]
Ip = Annotated[str, AfterValidator(_wrap(validation.check_ip))]
ImageRef = Annotated[str, Field(min_length=1, max_length=1024),
                     AfterValidator(_wrap(lambda v: validation.check_image_ref(v, "value")))]
KernelArgs = Annotated[str, Field(max_length=4096),
                       AfterValidator(_wrap(lambda v: validation.check_safe_text(v, "value")))]
Ref = Annotated[str, Field(min_length=1, max_length=63)]
# Issue 22: what a node's inventory must show before it installs (bootfleet/inventory.py).
Requirements = Annotated[dict, AfterValidator(check_requirements)]


def _template(value: str) -> str:
    return _wrap(lambda v: check_template(v, "template"))(value)


Template = Annotated[str, Field(max_length=256 * 1024), AfterValidator(_template)]


class _Strict(BaseModel):
    # defer_build: a model is compiled when it first validates, not at import (cold start)
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, defer_build=True)


# The stage from which a node's repeated boot means "installed, boot the disk" (docs/installers.md).
InstalledAfter = Literal["configuring", "installing"]


Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
DiskPath = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9:._+-]+$")]


class DiskRule(_Strict):
    """Issue 22: which disk the agent writes the image to: the largest, the smallest that holds
    the image, the one with this serial, or this /dev/disk/by-path name."""
    rule: Literal["largest", "smallest", "serial", "path"] = "largest"
    serial: Serial | None = None
    path: DiskPath | None = None

    @model_validator(mode="after")
    def _named(self):
        if self.rule in ("serial", "path") and not getattr(self, self.rule):
            raise ValueError(f"rule {self.rule} needs the disk's {self.rule}")
        return self


class ImageSpec(_Strict):
    """Issue 22: the OS image the bootfleet agent streams to disk (docs/images.md)."""
    key: ImageRef  # a key in the image storage, or an http(s) URL
    sha256: Sha256  # of the file as stored (compressed, if it is)
    size_bytes: int = Field(ge=512, le=2**50)  # the raw image, once decompressed: what the disk must hold
    compression: Literal["none", "gz", "xz", "zstd"] | None = None  # none given: from the key's suffix
    disk: DiskRule = Field(default_factory=DiskRule)


class ProfileIn(_Strict):
    name: Name
    kernel: ImageRef
    initrds: list[ImageRef] = Field(default_factory=list, max_length=8)
    args: Annotated[KernelArgs, AfterValidator(_template)] = ""
    config_format: Literal["none", "ignition", "cloud-init"] = "none"
    config_template: Template = ""
    selectors: Labels = Field(default_factory=dict)
    metadata: dict = Field(default_factory=dict)
    require_secret: StrictBool = False
    installed_after: InstalledAfter | None = None
    requirements: Requirements = Field(default_factory=dict)  # issue 22
    image: ImageSpec | None = None  # issue 22: an image profile (the agent boots, writes it)


class ProfileUpdate(_Strict):
    name: Name | None = None
    kernel: ImageRef | None = None
    initrds: list[ImageRef] | None = Field(default=None, max_length=8)
    args: Annotated[KernelArgs, AfterValidator(_template)] | None = None
    config_format: Literal["none", "ignition", "cloud-init"] | None = None
    config_template: Template | None = None
    selectors: Labels | None = None
    metadata: dict | None = None
    require_secret: StrictBool | None = None
    installed_after: InstalledAfter | None = None  # null: back to restarting the install
    requirements: Requirements | None = None  # issue 22
    image: ImageSpec | None = None  # issue 22


class DeploymentIn(_Strict):
    name: Name
    profile: Ref
    provider: Literal["none", "local", "ibm"] = "none"
    dns_zone: Hostname | None = None
    placement: dict[str, str] = Field(default_factory=dict)
    spec: dict = Field(default_factory=dict)
    count: int = Field(default=0, ge=0, le=10000)
    require_secret: StrictBool = False
    requirements: Requirements = Field(default_factory=dict)  # issue 22: over its profile's, key by key


class DeploymentUpdate(_Strict):
    profile: Ref | None = None
    dns_zone: Hostname | None = None
    placement: dict[str, str] | None = None
    spec: dict | None = None
    count: int | None = Field(default=None, ge=0, le=10000)
    require_secret: StrictBool | None = None
    requirements: Requirements | None = None  # issue 22


class NodeIn(_Strict):
    macs: list[Mac] = Field(default_factory=list, max_length=16)
    uuid: Uuid | None = None
    serial: Serial | None = None
    hostname: Hostname | None = None
    ip: Ip | None = None
    labels: Labels = Field(default_factory=dict)
    deployment: Ref | None = None
    profile: Ref | None = None
    instance_id: Annotated[str, Field(max_length=128, pattern=r"^[A-Za-z0-9._-]+$")] | None = None


class NodeUpdate(_Strict):
    macs: list[Mac] | None = Field(default=None, max_length=16)
    uuid: Uuid | None = None
    serial: Serial | None = None
    hostname: Hostname | None = None
    ip: Ip | None = None
    labels: Labels | None = None  # replaces them all
    add_labels: Labels | None = None  # adds or changes these, keeps the rest
    remove_labels: list[LabelKey] | None = Field(default=None, max_length=64)  # removes these keys (absent: fine)
    deployment: Ref | None = None
    profile: Ref | None = None
    instance_id: Annotated[str, Field(max_length=128, pattern=r"^[A-Za-z0-9._-]+$")] | None = None


class DnsReconcileIn(_Strict):
    """POST /dns/reconcile: both optional."""

    deployment: Ref | None = None
    dry_run: StrictBool = False


class ImportIn(_Strict):
    """POST /config/api/v1/nodes/import: rows as NodeIn takes them, checked row by row."""

    nodes: list[dict] = Field(max_length=100_000)


class AdoptIn(_Strict):
    """POST /config/api/v1/unknown/{mac}/adopt: the new node's fields (its MAC is the path's)."""

    hostname: Hostname | None = None
    ip: Ip | None = None
    labels: Labels = Field(default_factory=dict)
    deployment: Ref | None = None
    profile: Ref | None = None


TokenName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]


class TokenIn(_Strict):
    """A scoped API token (roles.py); the answer shows the token once."""
    name: TokenName
    role: Literal["admin", "operator", "viewer", "metrics"]
    expires_in: Annotated[int, Field(ge=1, le=10 * 366 * 86400)] | None = None  # seconds; none: never


EventPattern = Annotated[str, Field(pattern=r"^(\*|[a-z][a-z-]{0,31}\.(\*|[a-z][a-z-]{0,31}))$")]
WebhookUrl = Annotated[str, Field(min_length=8, max_length=2048)]


class WebhookIn(_Strict):
    """A webhook: where to POST which events (node.ready, node.*, deployment.*, *)."""
    name: TokenName
    url: WebhookUrl
    events: list[EventPattern] = Field(min_length=1, max_length=32)
    secret: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{16,128}$")] | None = None  # none: one is made


class WebhookUpdate(_Strict):
    url: WebhookUrl | None = None
    events: list[EventPattern] | None = Field(default=None, min_length=1, max_length=32)
    active: StrictBool | None = None
