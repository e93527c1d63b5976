"""Settings, read once from the environment. Every name starts with BOOTFLEET_.

The full list is in docs/operations.md; tests/test_docs.py checks that each
setting read here is documented there.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field

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


def _get(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(PREFIX + name)
    if value is None or value == "":
        return default
    return value


def _int(name: str, default: int) -> int:
    raw = _get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{name} must be a whole number, got {raw!r}") from None


def _bool(name: str, default: bool) -> bool:
    raw = _get(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{PREFIX}{name} must be true or false, got {raw!r}")


def _choice(name: str, choices: tuple[str, ...], default: str) -> str:
    value = (_get(name, default) or default).lower()
    if value not in choices:
        raise SettingsError(f"{PREFIX}{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _stage_timeouts() -> dict[str, int]:
    """BOOTFLEET_STAGE_TIMEOUTS="booting=900,installing=3600" overrides the defaults."""
    timeouts = dict(DEFAULT_STAGE_TIMEOUTS)
    raw = _get("STAGE_TIMEOUTS")
    if raw:
        for item in raw.split(","):
            stage, sep, seconds = item.partition("=")
            stage = stage.strip()
            if not sep or stage not in DEFAULT_STAGE_TIMEOUTS or not seconds.strip().isdigit():
                raise SettingsError(
                    f"{PREFIX}STAGE_TIMEOUTS: expected stage=seconds with a stage among "
                    f"{', '.join(DEFAULT_STAGE_TIMEOUTS)}, got {item!r}"
                )
            timeouts[stage] = int(seconds)
    return timeouts


_ORIGIN = re.compile(r"^https?://([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$")


def _origins(name: str) -> tuple[str, ...]:
    """BOOTFLEET_CORS_ORIGIN="https://dash.example.com": the browser origin(s), comma separated, that may call the API."""
    origins = []
    for item in (_get(name) or "").split(","):
        origin = item.strip().rstrip("/").lower()
        if not origin:
            continue
        if not _ORIGIN.match(origin):
            raise SettingsError(f"{PREFIX}{name}: expected an origin like https://dashboard.example.com, got {item!r}")
        origins.append(origin)
    return tuple(origins)


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    admin_token: str | None = None
    token_secret: str | None = None
    token_ttl: int = 24 * 3600
    base_url: str | None = None
    images_dir: str = ".data/images"
    images_base_url: str | None = None
    storage: str = "local"
    s3_endpoint: str | None = None
    s3_public_endpoint: str | None = None
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_url_ttl: int = 3600
    discovery_profile: str | None = None
    max_body_bytes: int = 1024 * 1024
    db_pool_size: int = 4
    db_timeout: int = 5
    auto_migrate: bool = True
    retry_seconds: int = 30
    stage_timeouts: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_STAGE_TIMEOUTS))
    log_level: str = "INFO"
    cors_origins: tuple[str, ...] = ()
    cron_secret: str | None = None
    cleanup_cap: int = 50
    cleanup_grace: int = 3600
    retention_days: int = 30
    # vpc provisioning (docs/vpc.md); the API key is BOOTFLEET_IBMCLOUD_API_KEY
    vpc_url: str | None = None
    vpc_api_version: str = "2026-10-06"
    vpc_ipxe_image: str | None = None
    vpc_vsi_image: str | None = None
    vpc_timeout: int = 30
    vpc_retries: int = 5
    vpc_backoff_ms: int = 1000
    tagging_url: str | None = None
    provision_batch: int = 50
    # dns (docs/dns.md)
    dns_provider: str = "none"
    dns_zone: str | None = None
    dns_reverse_zone: str | None = None
    dns_ttl: int = 300
    dns_owner: str = "bootfleet"
    dns_server: str | None = None
    dns_port: int = 53
    dns_tsig_name: str | None = None
    dns_tsig_secret: str | None = None
    dns_tsig_algorithm: str = "hmac-sha256"
    ibm_dns_instance_id: str | None = None
    ibm_dns_zone_id: str | None = None
    ibmcloud_api_key: str | None = None
    ibm_dns_url: str | None = None
    ibm_iam_url: str | None = None

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            database_url=_get("DATABASE_URL"),
            admin_token=_get("ADMIN_TOKEN"),
            token_secret=_get("TOKEN_SECRET"),
            token_ttl=_int("TOKEN_TTL", 24 * 3600),
            base_url=(_get("BASE_URL") or "").rstrip("/") or None,
            images_dir=_get("IMAGES_DIR", ".data/images"),
            images_base_url=(_get("IMAGES_BASE_URL") or "").rstrip("/") or None,
            storage=_choice("STORAGE", ("local", "s3"), "local"),
            s3_endpoint=(_get("S3_ENDPOINT") or "").rstrip("/") or None,
            s3_public_endpoint=(_get("S3_PUBLIC_ENDPOINT") or "").rstrip("/") or None,
            s3_bucket=_get("S3_BUCKET"),
            s3_region=_get("S3_REGION", "us-east-1"),
            s3_access_key_id=_get("S3_ACCESS_KEY_ID"),
            s3_secret_access_key=_get("S3_SECRET_ACCESS_KEY"),
            s3_url_ttl=_int("S3_URL_TTL", 3600),
            discovery_profile=_get("DISCOVERY_PROFILE"),
            max_body_bytes=_int("MAX_BODY_BYTES", 1024 * 1024),
            db_pool_size=_int("DB_POOL_SIZE", 4),
            db_timeout=_int("DB_TIMEOUT", 5),
            auto_migrate=_bool("AUTO_MIGRATE", True),
            retry_seconds=_int("RETRY_SECONDS", 30),
            stage_timeouts=_stage_timeouts(),
            log_level=_get("LOG_LEVEL", "INFO").upper(),
            cors_origins=_origins("CORS_ORIGIN"),
            cron_secret=_get("CRON_SECRET"),
            cleanup_cap=_int("CLEANUP_CAP", 50),
            cleanup_grace=_int("CLEANUP_GRACE", 3600),
            retention_days=_int("RETENTION_DAYS", 30),
            vpc_url=_get("VPC_URL"),
            vpc_api_version=_get("VPC_API_VERSION", "2026-10-06"),
            vpc_ipxe_image=_get("VPC_IPXE_IMAGE"),
            vpc_vsi_image=_get("VPC_VSI_IMAGE"),
            vpc_timeout=_int("VPC_TIMEOUT", 30),
            vpc_retries=_int("VPC_RETRIES", 5),
            vpc_backoff_ms=_int("VPC_BACKOFF_MS", 1000),
            tagging_url=_get("TAGGING_URL"),
            provision_batch=_int("PROVISION_BATCH", 50),
            dns_provider=_get("DNS_PROVIDER", "none").lower(),
            dns_zone=_get("DNS_ZONE"),
            dns_reverse_zone=_get("DNS_REVERSE_ZONE"),
            dns_ttl=_int("DNS_TTL", 300),
            dns_owner=_get("DNS_OWNER", "bootfleet"),
            dns_server=_get("DNS_SERVER"),
            dns_port=_int("DNS_PORT", 53),
            dns_tsig_name=_get("DNS_TSIG_NAME"),
            dns_tsig_secret=_get("DNS_TSIG_SECRET"),
            dns_tsig_algorithm=_get("DNS_TSIG_ALGORITHM", "hmac-sha256"),
            ibm_dns_instance_id=_get("IBM_DNS_INSTANCE_ID"),
            ibm_dns_zone_id=_get("IBM_DNS_ZONE_ID"),
            ibmcloud_api_key=_get("IBMCLOUD_API_KEY"),
            ibm_dns_url=_get("IBM_DNS_URL"),
            ibm_iam_url=_get("IBM_IAM_URL"),
        )

    def require(self, name: str) -> str:
        """The value of a setting that this code path cannot do without."""
        value = getattr(self, name)
        if not value:
            raise SettingsError(f"{PREFIX}{name.upper()} is not set")
        return value


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()


def reset_settings() -> None:
    """Forget the cached settings (tests and `bootfleet serve` change the environment)."""
    get_settings.cache_clear()
