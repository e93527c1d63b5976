"""Settings, read once from the environment. Every name starts with BOOTFLEET_ (but PORT).

Each setting is one field of `Settings`, declared with `setting(default, parse)`:
its variable is BOOTFLEET_<FIELD NAME> unless `env=` names another; unset or
empty, it has its default; otherwise `parse(raw, variable)` turns the text into
the value (or raises SettingsError saying what is wrong).

The full list is in docs/operations.md; tests/unit/test_docs.py checks that each
setting declared here is documented there.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from bootfleet.errors import SettingsError

PREFIX = "BOOTFLEET_"

# Default time a node may spend in a stage before cleanup marks it failed (seconds).
DEFAULT_STAGE_TIMEOUTS = {
    "provisioning": 30 * 60,
    "booting": 15 * 60,
    "configuring": 30 * 60,
    "installing": 60 * 60,
    "rebooting": 40 * 60,
}

# --- parsers: (raw text, variable name) -> value ---------------------------------------------

Parse = Callable[[str, str], Any]


def _str(raw: str, name: str) -> str:
    return raw


def _int(raw: str, name: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None


def _bool(raw: str, name: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _url(raw: str, name: str) -> str | None:
    """A base URL, without its trailing slash ("/" alone: unset)."""
    return raw.rstrip("/") or None


def _lower(raw: str, name: str) -> str:
    return raw.lower()


def _upper(raw: str, name: str) -> str:
    return raw.upper()


def _choice(*choices: str) -> Parse:
    def parse(raw: str, name: str) -> str:
        value = raw.lower()
        if value not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    return parse


def _stage_timeouts(raw: str, name: str) -> dict[str, int]:
    """BOOTFLEET_STAGE_TIMEOUTS="booting=900,installing=3600" overrides the defaults."""
    timeouts = dict(DEFAULT_STAGE_TIMEOUTS)
    for item in raw.split(","):
        stage, sep, seconds = item.partition("=")
        stage = stage.strip()
        if not sep or stage not in DEFAULT_STAGE_TIMEOUTS or not seconds.strip().isdigit():
            raise SettingsError(
                f"{name}: expected stage=seconds with a stage among "
                f"{', '.join(DEFAULT_STAGE_TIMEOUTS)}, got {item!r}"
            )
        timeouts[stage] = int(seconds)
    return timeouts


_ORIGIN = re.compile(r"^https?://([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$")


def _origins(raw: str, name: str) -> tuple[str, ...]:
    """BOOTFLEET_CORS_ORIGIN="https://dash.example.com": the browser origin(s), comma separated, that may call the API."""
    origins = []
    for item in raw.split(","):
        origin = item.strip().rstrip("/").lower()
        if not origin:
            continue
        if not _ORIGIN.fullmatch(origin):
            raise SettingsError(f"{name}: expected an origin like https://dashboard.example.com, got {item!r}")
        origins.append(origin)
    return tuple(origins)


def _networks(raw: str, name: str) -> tuple:
    """CIDRs, comma separated ("10.240.0.0/18,192.168.10.0/24"); "none": no network. Every
    address (0.0.0.0/0, ::/0) is refused."""
    if raw.strip().lower() == "none":
        return ()
    networks = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise SettingsError(f"{name}: expected CIDRs like 10.240.0.0/18, comma separated, got {item!r}") from None
        if network.prefixlen == 0:  # refused, not warned about: it would trust the whole internet
            raise SettingsError(f"{name}: {item} is every address, which would trust any client on the internet"
                                f" (docs/security.md); list the networks you mean")
        networks.append(network)
    return tuple(networks)


def _allow_list(raw: str, name: str) -> tuple:
    """BOOTFLEET_WEBHOOK_ALLOW="hooks.example.com,*.ops.example.com,10.0.0.0/8": host names, a
    wildcard for a domain's hosts, or CIDRs (an address in the URL must be inside one)."""
    entries: list = []
    for item in raw.split(","):
        item = item.strip().lower().rstrip(".")
        if not item:
            continue
        try:
            entries.append(ipaddress.ip_network(item, strict=False))
            continue
        except ValueError:
            pass
        if not re.fullmatch(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*", item):
            raise SettingsError(f"{name}: expected host names, *.domain or CIDRs, comma separated, got {item!r}")
        entries.append(item)
    return tuple(entries)


# --- declaring a setting -------------------------------------------------------------------


def setting(default: Any = None, parse: Parse = _str, env: str | None = None) -> Any:
    """A field of `Settings`: read from `env` (default BOOTFLEET_<FIELD NAME>) and parsed,
    or `default` when the variable is unset or empty."""
    metadata = {"parse": parse, "env": env}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def env_name(f: Field) -> str:
    """The environment variable a `Settings` field is read from."""
    return f.metadata["env"] or PREFIX + f.name.upper()


def env_names() -> list[str]:
    """Every environment variable `Settings` reads, in declaration order."""
    return [env_name(f) for f in fields(Settings)]


def _home_config() -> str:
    """~/.config, the XDG default; a process without a home (a container's arbitrary user) gets none."""
    try:
        return str(Path.home() / ".config")
    except RuntimeError:
        return ".config"


_HOME_CONFIG = _home_config()

# The checkout: lib/common/bootfleet/settings.py -> the repository, which holds functions/ and static/.
_CHECKOUT = str(Path(__file__).resolve().parents[3])


@dataclass(frozen=True)
class Settings:
    database_url: str | None = setting()
    admin_token: str | None = setting()
    token_secret: str | None = setting()
    token_ttl: int = setting(6 * 3600, _int)  # an install's time limit: its tokens expire then
    # who may get a token (docs/security.md)
    boot_networks: tuple | None = setting(None, _networks)  # client CIDRs booting without a secret; None: unset
    trusted_proxies: tuple = setting((), _networks)  # peers whose X-Forwarded-For is believed
    gateway_secret: str | None = setting()  # the gateway's X-Bootfleet-Gateway header (Code Engine)
    boot_rate_limit: int = setting(20, _int)  # /boot/ requests per second per client (the router); 0: off
    admin_failure_limit: int = setting(10, _int)  # failed admin-token attempts a minute per client; 0: off
    discovery_cap: int = setting(50, _int)  # discovered nodes not yet ready, at most
    base_url: str | None = setting(None, _url)
    images_dir: str = setting(".data/images")
    images_base_url: str | None = setting(None, _url)
    storage: str = setting("local", _choice("local", "s3"))
    s3_endpoint: str | None = setting(None, _url)
    s3_public_endpoint: str | None = setting(None, _url)
    s3_bucket: str | None = setting()
    s3_region: str = setting("us-east-1")
    s3_access_key_id: str | None = setting()
    s3_secret_access_key: str | None = setting()
    s3_url_ttl: int = setting(3600, _int)
    discovery_profile: str | None = setting()
    max_body_bytes: int = setting(1024 * 1024, _int)
    client_timeout: int = setting(15, _int)  # seconds to send a whole request (serve, the router: web/worker.py)
    db_pool_size: int = setting(4, _int)
    db_timeout: int = setting(5, _int)
    auto_migrate: bool = setting(True, _bool)
    retry_seconds: int = setting(30, _int)
    stage_timeouts: dict[str, int] = setting(DEFAULT_STAGE_TIMEOUTS, _stage_timeouts)
    log_level: str = setting("INFO", _upper)
    cors_origins: tuple[str, ...] = setting((), _origins, env="BOOTFLEET_CORS_ORIGIN")
    cron_secret: str | None = setting()
    cleanup_cap: int = setting(50, _int)
    cleanup_grace: int = setting(3600, _int)
    retention_days: int = setting(30, _int)
    audit_retention_days: int = setting(365, _int)  # cleanup removes audit entries older than this; 0: keep all
    # signed webhooks (bootfleet/notify.py, docs/operations.md)
    webhook_allow: tuple = setting((), _allow_list)  # host names, *.domains and CIDRs webhooks may go to
    webhook_backoff: int = setting(30, _int)  # seconds before the first retry; doubled each time, up to an hour
    webhook_max_attempts: int = setting(12, _int)
    webhook_timeout: int = setting(5, _int)  # seconds a receiver has to answer
    webhook_every: int = setting(10, _int)  # serve sends due deliveries this often (seconds; 0: only at cleanup)
    cleanup_every: int = setting(300, _int)  # serve runs cleanup this often (seconds; 0: never), as the cron does
    unknown_max: int = setting(10000, _int)  # most unknown machines remembered (the least recently seen go)
    unknown_event_seconds: int = setting(300, _int)  # at most one event per unknown MAC this often
    unknown_event_max: int = setting(20, _int)  # and at most this many unknown-boot events in that time, all MACs
    # vpc provisioning (docs/vpc.md); the API key is BOOTFLEET_IBMCLOUD_API_KEY
    vpc_url: str | None = setting()
    vpc_api_version: str = setting("2026-10-06")
    vpc_ipxe_image: str | None = setting()
    vpc_vsi_image: str | None = setting()
    tagging_url: str | None = setting()
    provision_batch: int = setting(50, _int)
    # dns (docs/dns.md)
    dns_provider: str = setting("none", _lower)
    dns_zone: str | None = setting()
    dns_reverse_zone: str | None = setting()
    dns_ttl: int = setting(300, _int)
    dns_owner: str = setting("bootfleet")
    dns_server: str | None = setting()
    dns_port: int = setting(53, _int)
    dns_tsig_name: str | None = setting()
    dns_tsig_secret: str | None = setting()
    dns_tsig_algorithm: str = setting("hmac-sha256")
    ibm_dns_instance_id: str | None = setting()
    ibm_dns_zone_id: str | None = setting()
    ibmcloud_api_key: str | None = setting()
    ibm_dns_url: str | None = setting()
    ibm_iam_url: str | None = setting()
    # every IBM Cloud call (VPC, Global Tagging, DNS Services, IAM): providers/ibmcloud.py
    ibm_timeout: int = setting(30, _int)
    ibm_retries: int = setting(5, _int)
    ibm_backoff_ms: int = setting(1000, _int)
    # the bootfleet command and bootfleet serve (docs/operations.md)
    url: str = setting("http://127.0.0.1:8080")  # where operator commands send requests (the client side)
    data_dir: str = setting(".data")  # serve's database, secrets and images; the local provider's VMs
    access_log: str | None = setting()  # serve's gunicorn access log ("-": stderr)
    # the client settings serve writes (<XDG_CONFIG_HOME>/bootfleet/client.json) and the CLI reads
    xdg_config_home: str = setting(_HOME_CONFIG, env="XDG_CONFIG_HOME")
    root: str = setting(_CHECKOUT)  # where the router finds functions/ and static/ (the image sets /app)
    # Unprefixed on purpose: Code Engine tells an app its port in PORT (functions-framework
    # listens on it); `bootfleet serve` takes the same variable for its --port default.
    port: int = setting(8080, _int, env="PORT")
    # prometheus_client's own variable: where gunicorn's processes keep their metrics (serve and
    # the container set it); read here only to know whether a scrape adds up several processes.
    metrics_dir: str | None = setting(None, env="PROMETHEUS_MULTIPROC_DIR")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Every setting from `environ` (default: os.environ); unset or empty: its default."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            name = env_name(f)
            raw = environ.get(name)
            if raw:
                values[f.name] = f.metadata["parse"](raw, name)
        return cls(**values)

    def require(self, name: str) -> str:
        """The value of a setting that this code path cannot do without."""
        value = getattr(self, name)
        if not value:
            raise SettingsError(f"{env_name(self.__dataclass_fields__[name])} is not set")
        return value

    def is_default(self, name: str) -> bool:
        """True if the setting has its default value (unset, or set to the default)."""
        f = self.__dataclass_fields__[name]
        default = f.default_factory() if f.default is MISSING else f.default
        return getattr(self, name) == default


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()


def reset_settings() -> None:
    """Forget the cached settings (tests and `bootfleet serve` change the environment)."""
    get_settings.cache_clear()
