# bootfleet on IBM Cloud: one Code Engine app per function from one image, a gateway app
# (nginx, infra/nginx) behind the domain mapping, COS for images, DNS Services for node
# records, Databases for PostgreSQL, and an example VPC whose bare metal servers
# network-boot through bootfleet. README.md walks through it.

data "ibm_resource_group" "group" {
  name = var.resource_group
}

resource "random_password" "admin_token" {
  length  = 40
  special = false
}

resource "random_password" "token_secret" {
  length  = 64
  special = false
}

resource "random_password" "cron_secret" {
  length  = 40
  special = false
}

# Shared by the gateway and the functions: how they know a request came through the gateway.
resource "random_password" "gateway_secret" {
  length  = 48
  special = false
}

locals {
  # The five functions (bootfleet.web.router.FUNCTIONS); each becomes one app.
  functions = ["boot", "config", "status", "dns", "cleanup"]
  base_url  = "https://${var.domain}"

  cos_public_endpoint = "https://s3.${var.region}.cloud-object-storage.appdomain.cloud"
  cos_endpoint        = var.cos_endpoint == "public" ? local.cos_public_endpoint : "https://s3.${var.cos_endpoint}.${var.region}.cloud-object-storage.appdomain.cloud"

  # Every setting the functions read that is not a secret (docs/operations.md).
  # Empty values are left out, so the code's own default applies.
  settings = {
    BOOTFLEET_BASE_URL          = local.base_url
    BOOTFLEET_TOKEN_TTL         = tostring(var.settings.token_ttl)
    BOOTFLEET_RETRY_SECONDS     = tostring(var.settings.retry_seconds)
    BOOTFLEET_MAX_BODY_BYTES    = tostring(var.settings.max_body_bytes)
    BOOTFLEET_DB_TIMEOUT        = tostring(var.settings.db_timeout)
    BOOTFLEET_AUTO_MIGRATE      = tostring(var.settings.auto_migrate)
    BOOTFLEET_STAGE_TIMEOUTS    = var.settings.stage_timeouts
    BOOTFLEET_LOG_LEVEL         = upper(var.settings.log_level)
    BOOTFLEET_DISCOVERY_PROFILE = var.settings.discovery_profile
    BOOTFLEET_BOOT_NETWORKS     = var.settings.boot_networks == "" ? "none" : var.settings.boot_networks
    BOOTFLEET_BOOT_RATE_LIMIT   = tostring(var.settings.boot_rate_limit)
    BOOTFLEET_DISCOVERY_CAP     = tostring(var.settings.discovery_cap)
    BOOTFLEET_CORS_ORIGIN       = var.settings.cors_origin
    BOOTFLEET_CLEANUP_CAP       = tostring(var.settings.cleanup_cap)
    BOOTFLEET_CLEANUP_GRACE     = tostring(var.settings.cleanup_grace)
    BOOTFLEET_RETENTION_DAYS    = tostring(var.settings.retention_days)

    # machines that ask boot for a script with a MAC no node has (bootfleet node unknown)
    BOOTFLEET_UNKNOWN_MAX           = tostring(var.settings.unknown_max)
    BOOTFLEET_UNKNOWN_EVENT_SECONDS = tostring(var.settings.unknown_event_seconds)
    BOOTFLEET_UNKNOWN_EVENT_MAX     = tostring(var.settings.unknown_event_max)
    BOOTFLEET_ADMIN_FAILURE_LIMIT   = tostring(var.settings.admin_failure_limit)

    # the audit log; webhooks (delivered by each cleanup pass: the cron schedule above)
    BOOTFLEET_AUDIT_RETENTION_DAYS = tostring(var.settings.audit_retention_days)
    BOOTFLEET_WEBHOOK_ALLOW        = var.settings.webhook_allow
    BOOTFLEET_WEBHOOK_BACKOFF      = tostring(var.settings.webhook_backoff)
    BOOTFLEET_WEBHOOK_MAX_ATTEMPTS = tostring(var.settings.webhook_max_attempts)
    BOOTFLEET_WEBHOOK_TIMEOUT      = tostring(var.settings.webhook_timeout)

    # images: COS through its S3 API; nodes get presigned public URLs (or the CDN's)
    BOOTFLEET_STORAGE            = "s3"
    BOOTFLEET_S3_ENDPOINT        = local.cos_endpoint
    BOOTFLEET_S3_PUBLIC_ENDPOINT = local.cos_public_endpoint
    BOOTFLEET_S3_BUCKET          = ibm_cos_bucket.images.bucket_name
    BOOTFLEET_S3_REGION          = var.region
    BOOTFLEET_S3_URL_TTL         = tostring(var.settings.s3_url_ttl)
    BOOTFLEET_IMAGES_BASE_URL    = var.images_base_url

    # servers: no BOOTFLEET_VPC_URL, so each deployment's VPC calls go to the endpoint of
    # its own placement's region (the SDK knows them); one pinned URL would override them all.
    BOOTFLEET_VPC_API_VERSION = var.settings.vpc_api_version
    BOOTFLEET_VPC_IPXE_IMAGE  = var.netboot_image == "" ? "" : data.ibm_is_image.netboot[0].id
    BOOTFLEET_VPC_VSI_IMAGE   = local.vsi_ipxe_image_id
    BOOTFLEET_TAGGING_URL     = "https://tags.global-search-tagging.cloud.ibm.com"
    BOOTFLEET_PROVISION_BATCH = tostring(var.settings.provision_batch)

    # every IBM Cloud call (VPC, Global Tagging, DNS Services, IAM): one retrying client
    BOOTFLEET_IBM_TIMEOUT    = tostring(var.settings.ibm_timeout)
    BOOTFLEET_IBM_RETRIES    = tostring(var.settings.ibm_retries)
    BOOTFLEET_IBM_BACKOFF_MS = tostring(var.settings.ibm_backoff_ms)

    # DNS: records in the DNS Services zone below
    BOOTFLEET_DNS_PROVIDER        = "ibm"
    BOOTFLEET_DNS_ZONE            = ibm_dns_zone.fleet.name
    BOOTFLEET_DNS_REVERSE_ZONE    = var.dns_reverse_zone
    BOOTFLEET_DNS_TTL             = tostring(var.settings.dns_ttl)
    BOOTFLEET_DNS_OWNER           = var.settings.dns_owner
    BOOTFLEET_IBM_DNS_INSTANCE_ID = ibm_resource_instance.dns.guid
    BOOTFLEET_IBM_DNS_ZONE_ID     = ibm_dns_zone.fleet.zone_id
    BOOTFLEET_IBM_DNS_URL         = "https://api.dns-svcs.cloud.ibm.com/v1"
    BOOTFLEET_IBM_IAM_URL         = "https://iam.cloud.ibm.com"
  }

  # The secrets, kept in a Code Engine secret rather than the config map.
  secret_settings = {
    BOOTFLEET_DATABASE_URL         = local.database_url
    BOOTFLEET_ADMIN_TOKEN          = random_password.admin_token.result
    BOOTFLEET_TOKEN_SECRET         = random_password.token_secret.result
    BOOTFLEET_CRON_SECRET          = random_password.cron_secret.result
    BOOTFLEET_GATEWAY_SECRET       = random_password.gateway_secret.result
    BOOTFLEET_S3_ACCESS_KEY_ID     = ibm_resource_key.images_hmac.credentials["cos_hmac_keys.access_key_id"]
    BOOTFLEET_S3_SECRET_ACCESS_KEY = ibm_resource_key.images_hmac.credentials["cos_hmac_keys.secret_access_key"]
    BOOTFLEET_IBMCLOUD_API_KEY     = var.bootfleet_api_key
  }
}
