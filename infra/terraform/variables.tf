# --- account and placement -----------------------------------------------------------

variable "ibmcloud_api_key" {
  description = "API key Terraform uses to create everything (and to create the cleanup cron subscription with the ibmcloud CLI)."
  type        = string
  sensitive   = true
}

variable "region" {
  description = "IBM Cloud region for Code Engine, COS bucket, database and VPC, e.g. us-south or eu-de."
  type        = string
  default     = "us-south"

  validation {
    condition     = contains(["us-south", "us-east", "eu-de", "eu-gb", "eu-es", "jp-tok", "jp-osa", "au-syd", "ca-tor", "br-sao"], var.region)
    error_message = "region must be an IBM Cloud region with Code Engine and VPC, e.g. us-south."
  }
}

variable "resource_group" {
  description = "Name of the existing resource group everything is created in."
  type        = string
  default     = "Default"
}

variable "name" {
  description = "Prefix for every resource name (lowercase letters, digits and dashes)."
  type        = string
  default     = "bootfleet"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}[a-z0-9]$", var.name))
    error_message = "name must be 3 to 22 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = list(string)
  default     = ["bootfleet"]
}

# --- the image and the apps ---------------------------------------------------------

variable "image" {
  description = "The bootfleet image built from the Containerfile, e.g. icr.io/my-namespace/bootfleet:0.1.0 (the same image runs every app)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]*(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9._-]+)?(@sha256:[a-f0-9]{64})?$", var.image))
    error_message = "image must be a full reference like icr.io/namespace/bootfleet:0.1.0."
  }
}

variable "registry_api_key" {
  description = "API key that may pull the image (Container Registry reader). Empty when the image is public."
  type        = string
  default     = ""
  sensitive   = true
}

variable "functions" {
  description = "Size and scaling of each function's app (docs/deployment.md, Sizing): CPU and memory per instance; min_instances 0 scales to zero when idle; concurrency is the requests one instance takes at once (Code Engine's container concurrency), which are also its gunicorn threads and its database connections."
  type = map(object({
    cpu           = string
    memory        = string
    min_instances = number
    max_instances = number
    concurrency   = optional(number, 8)
  }))
  # boot: one Python process saturates one vCPU; 10 requests in flight keep it busy while each
  # waits on its database round trip; 4 instances serve a 10,000-node storm (docs/deployment.md).
  # Connections at most: 4 x 10 + 2 x 8 + 2 x 8 + 4 + 2, and cleanup's lock: 79 of the 100 that
  # Databases for PostgreSQL gives applications (database_connection_limit).
  default = {
    boot    = { cpu = "1", memory = "2G", min_instances = 0, max_instances = 4, concurrency = 10 }
    config  = { cpu = "0.5", memory = "1G", min_instances = 0, max_instances = 2, concurrency = 8 }
    status  = { cpu = "0.5", memory = "1G", min_instances = 0, max_instances = 2, concurrency = 8 }
    dns     = { cpu = "0.25", memory = "0.5G", min_instances = 0, max_instances = 1, concurrency = 4 }
    cleanup = { cpu = "0.25", memory = "0.5G", min_instances = 0, max_instances = 1, concurrency = 2 }
  }

  validation {
    condition     = length(setsubtract(["boot", "config", "status", "dns", "cleanup"], keys(var.functions))) == 0 && length(setsubtract(keys(var.functions), ["boot", "config", "status", "dns", "cleanup"])) == 0
    error_message = "functions must size exactly boot, config, status, dns and cleanup."
  }

  validation {
    # Code Engine's supported CPU and memory pairs.
    condition = alltrue([for f in values(var.functions) : contains([
      "0.125/0.25G", "0.125/0.5G", "0.125/1G", "0.25/0.5G", "0.25/1G", "0.25/2G", "0.5/1G", "0.5/2G", "0.5/4G",
      "1/2G", "1/4G", "1/8G", "2/4G", "2/8G", "2/16G", "4/8G", "4/16G", "4/32G",
    ], "${f.cpu}/${f.memory}")])
    error_message = "each function's cpu/memory must be a pair Code Engine supports, e.g. 0.25 with 0.5G or 0.5 with 1G."
  }

  validation {
    condition     = alltrue([for f in values(var.functions) : f.min_instances >= 0 && f.max_instances >= f.min_instances && f.max_instances > 0])
    error_message = "each function needs 0 <= min_instances <= max_instances and max_instances > 0."
  }

  validation {
    condition     = alltrue([for f in values(var.functions) : f.concurrency >= 1 && f.concurrency <= 100])
    error_message = "each function's concurrency must be between 1 and 100."
  }
}

variable "database_connection_limit" {
  description = "Connections the functions may open to the database at most: Databases for PostgreSQL sets max_connections to 115 and keeps 15 for its superuser. Raise it with max_connections (docs/deployment.md, Sizing)."
  type        = number
  default     = 100

  validation {
    condition     = var.database_connection_limit >= 10
    error_message = "database_connection_limit must be at least 10."
  }
}

variable "gateway_trusted_hops" {
  description = "CIDRs of Code Engine's own hops between a client and the gateway, skipped from the right of X-Forwarded-For to find the client's address (docs/security.md). Check with `bootfleet doctor` after the first apply."
  type        = list(string)
  # What IBM's Code Engine docs (subscription-cron.md, subscription-kafka.md) and knative/serving#3112
  # show an app receiving: the Istio ingress and activator pods, the pod's sidecars (infra/nginx/render.py).
  default = ["172.30.0.0/16", "127.0.0.0/8", "10.128.0.0/14", "::1/128"]

  validation {
    condition     = alltrue([for c in var.gateway_trusted_hops : can(cidrhost(c, 0)) && !endswith(c, "/0")])
    error_message = "gateway_trusted_hops: each item must be a CIDR such as 172.30.0.0/16, and not /0 (a client could then choose its own address)."
  }
}

variable "gateway_min_instances" {
  description = "Gateway instances kept running; 1 avoids a cold start on the first iPXE request of a boot storm."
  type        = number
  default     = 1

  validation {
    condition     = var.gateway_min_instances >= 0 && var.gateway_min_instances <= 10
    error_message = "gateway_min_instances must be between 0 and 10."
  }
}

# --- the domain ---------------------------------------------------------------------

variable "domain" {
  description = "The public name nodes and operators use, e.g. boot.example.com. Point a CNAME at the domain_cname_target output."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,}$", var.domain))
    error_message = "domain must be a lowercase DNS name like boot.example.com."
  }
}

variable "tls_certificate" {
  description = "PEM certificate chain for domain, leaf first, with an RSA key (a publicly trusted CA, so iPXE and browsers verify it; docs/vpc.md)."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("-----BEGIN CERTIFICATE-----", var.tls_certificate))
    error_message = "tls_certificate must be a PEM certificate chain."
  }

  # The leaf's SubjectPublicKeyInfo names id-ecPublicKey (OID 1.2.840.10045.2.1, DER 2a 86 48 ce 3d 02 01)
  # for an ECDSA key; decoded as ISO-8859-1 every DER byte is one character. iPXE before v2.0.0 (Debian
  # 13's 1.21.1+git20250501 included) has no ECDHE-ECDSA cipher suite (iPXE commit 5aab6b7a3,
  # 2025-12-19) and Code Engine offers only ECDHE suites, so nodes could not connect (docs/vpc.md).
  validation {
    condition     = try(!strcontains(textdecodebase64(replace(regex("-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\\s]+)-----END CERTIFICATE-----", var.tls_certificate)[0], "/\\s/", ""), "ISO-8859-1"), "\u002a\u0086\u0048\u00ce\u003d\u0002\u0001"), true)
    error_message = "tls_certificate has an ECDSA key: the iPXE builds nodes run (Debian 13's, any before v2.0.0) cannot use it. Get an RSA certificate (certbot --key-type rsa; docs/vpc.md)."
  }
}

variable "tls_private_key" {
  description = "PEM private key of tls_certificate."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("-----BEGIN [A-Z ]*PRIVATE KEY-----", var.tls_private_key))
    error_message = "tls_private_key must be a PEM private key."
  }

  # An EC key: SEC 1's "EC PRIVATE KEY", or PKCS #8 whose AlgorithmIdentifier is id-ecPublicKey (see tls_certificate).
  validation {
    condition     = !strcontains(var.tls_private_key, "-----BEGIN EC PRIVATE KEY-----") && try(!strcontains(textdecodebase64(replace(regex("-----BEGIN PRIVATE KEY-----([A-Za-z0-9+/=\\s]+)-----END PRIVATE KEY-----", var.tls_private_key)[0], "/\\s/", ""), "ISO-8859-1"), "\u002a\u0086\u0048\u00ce\u003d\u0002\u0001"), true)
    error_message = "tls_private_key is an EC (ECDSA) key: the iPXE builds nodes run (Debian 13's, any before v2.0.0) cannot use its certificate. Get an RSA certificate (certbot --key-type rsa; docs/vpc.md)."
  }
}

# --- database -----------------------------------------------------------------------

variable "database_url" {
  description = "An existing PostgreSQL: postgresql://USER@HOST:PORT/DB?sslmode=verify-full&sslrootcert=/etc/bootfleet/db/ca.crt, with :PASSWORD after USER. Empty: create Databases for PostgreSQL."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.database_url == "" || can(regex("^postgres(ql)?://", var.database_url))
    error_message = "database_url must be empty or start with postgresql://."
  }
}

variable "database_ca_certificate" {
  description = "PEM CA of the existing database (database_url), mounted at /etc/bootfleet/db/ca.crt. Ignored when Terraform creates the database."
  type        = string
  default     = ""
}

variable "database_endpoint" {
  description = "How the apps reach the created database: private (IBM's private network) or public."
  type        = string
  default     = "private"

  validation {
    condition     = contains(["private", "public"], var.database_endpoint)
    error_message = "database_endpoint must be private or public."
  }
}

variable "database_memory_mb" {
  description = "Memory per member of the created database, in MB."
  type        = number
  default     = 4096

  validation {
    condition     = var.database_memory_mb >= 1024 && var.database_memory_mb % 128 == 0
    error_message = "database_memory_mb must be at least 1024 and a multiple of 128."
  }
}

variable "database_disk_mb" {
  description = "Disk per member of the created database, in MB."
  type        = number
  default     = 10240

  validation {
    condition     = var.database_disk_mb >= 5120
    error_message = "database_disk_mb must be at least 5120."
  }
}

# --- object storage -----------------------------------------------------------------

variable "images_base_url" {
  description = "A CDN in front of the bucket that serves image keys (BOOTFLEET_IMAGES_BASE_URL). Empty: boot hands nodes presigned COS URLs."
  type        = string
  default     = ""

  validation {
    condition     = var.images_base_url == "" || can(regex("^https?://", var.images_base_url))
    error_message = "images_base_url must be empty or an http(s) URL."
  }
}

variable "cos_endpoint" {
  description = "Which COS endpoint the apps use for the API: public, private or direct (presigned URLs for nodes always use the public one)."
  type        = string
  default     = "public"

  validation {
    condition     = contains(["public", "private", "direct"], var.cos_endpoint)
    error_message = "cos_endpoint must be public, private or direct."
  }
}

# --- DNS and the VPC example --------------------------------------------------------

variable "dns_zone" {
  description = "Private DNS zone (DNS Services) for node and deployment records, e.g. fleet.internal."
  type        = string
  default     = "fleet.internal"

  # DNS Services: at least two labels, and no digit in the top-level one (example.com1 is refused);
  # IBM's own names and their subdomains are refused too (its docs: Known issues and limitations;
  # Managing DNS zones, Restricted DNS zone names).
  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.dns_zone)) && length(var.dns_zone) <= 253
    error_message = "dns_zone must be a lowercase DNS name of two labels or more whose last label has letters only, like fleet.internal: DNS Services refuses a digit in the top-level label."
  }

  validation {
    condition = !anytrue([for name in [
      "ibm.com", "softlayer.com", "bluemix.net", "softlayer.local", "mybluemix.net", "networklayer.com", "ibmcloud.com",
      "pdnsibm.net", "appdomain.cloud", "compass.cobaltiron.com", "uptycs.io", "registry.access.redhat.com",
      "registry.redhat.io", "registry.connect.redhat.com", "quay.io",
    ] : var.dns_zone == name || endswith(var.dns_zone, ".${name}")])
    error_message = "dns_zone is, or is under, a name DNS Services reserves (ibm.com, appdomain.cloud, softlayer.local, ...): choose another, like fleet.internal."
  }
}

variable "dns_reverse_zone" {
  description = "Reverse zone for PTR records, e.g. 10.10.in-addr.arpa. Empty: no PTR records."
  type        = string
  default     = ""
}

variable "create_vpc" {
  description = "Create the example VPC, subnet and public gateway (bare metal nodes need a way out to the domain)."
  type        = bool
  default     = true
}

variable "vpc_crn" {
  description = "With create_vpc = false: the CRN of the VPC whose nodes resolve the DNS zone (the zone's permitted network)."
  type        = string
  default     = ""
}

variable "zone" {
  description = "Availability zone of the example subnet and bare metal servers, e.g. us-south-1."
  type        = string
  default     = "us-south-1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+-[1-3]$", var.zone))
    error_message = "zone must look like us-south-1."
  }
}

variable "subnet_address_count" {
  description = "Addresses in the example subnet, taken from the VPC's automatic address prefix in its zone (a power of two, 8 to 16384)."
  type        = number
  default     = 256

  validation {
    condition     = contains([8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384], var.subnet_address_count)
    error_message = "subnet_address_count must be a power of two from 8 to 16384."
  }
}

variable "subnet_cidr" {
  description = "Leave empty to have the subnet carved from the VPC's automatic prefixes. Or a CIDR like 10.10.10.0/24: the VPC then manages its prefixes by hand and gets this one in its zone."
  type        = string
  default     = ""

  validation {
    condition     = var.subnet_cidr == "" || can(cidrhost(var.subnet_cidr, 0))
    error_message = "subnet_cidr must be empty or a CIDR block like 10.10.10.0/24."
  }
}

variable "bare_metal_count" {
  description = "Removed: Terraform no longer creates bare metal servers (they had no enrolment secret, so boot refused them). Create them with a bootfleet deployment: bootfleet deployment create --provider ibm $(terraform output -raw placement_flags). Must be 0."
  type        = number
  default     = 0

  validation {
    condition     = var.bare_metal_count == 0
    error_message = "bare_metal_count is gone: servers made by Terraform carried no enrolment secret and were refused at boot. Create them with `bootfleet deployment create --name NAME --profile PROFILE --provider ibm --count N $(terraform output -raw placement_flags)` (docs/deployment.md), and set bare_metal_count = 0 or remove it. Servers an earlier apply made are then destroyed; to keep them, run `terraform state rm 'ibm_is_bare_metal_server.node'` first."
  }
}

variable "bare_metal_profile" {
  description = "Bare metal server profile for the placement output (a deployment's placement.profile), e.g. bx2d-metal-96x384."
  type        = string
  default     = "bx2d-metal-96x384"
}

variable "netboot_image" {
  description = "Name of the stock image whose user_data_format is ipxe: a bare metal server booted from it runs its user data (bootfleet's chainloader) as an iPXE script; BOOTFLEET_VPC_IPXE_IMAGE. Empty: bootfleet takes the first such image in the region (ibmcloud is images --user-data-format ipxe)."
  type        = string
  default     = ""
}

variable "vsi_ipxe_image" {
  description = "Name of a custom iPXE image for virtual server instances (BOOTFLEET_VPC_VSI_IMAGE). Empty: bare metal only."
  type        = string
  default     = ""
}

variable "ssh_key" {
  description = "Name of an existing VPC SSH key; its id goes in the placement output (placement.keys) for the servers deployments create. Empty: none."
  type        = string
  default     = ""
}

variable "bootfleet_api_key" {
  description = "API key the apps use for the VPC, Global Tagging and DNS Services APIs: a service ID with the roles docs/deployment.md lists, nothing else."
  type        = string
  sensitive   = true
}

# --- the cleanup schedule and tuning ------------------------------------------------

variable "cleanup_schedule" {
  description = "Cron schedule (UTC) of the cleanup run."
  type        = string
  default     = "*/5 * * * *"

  validation {
    condition     = length(split(" ", var.cleanup_schedule)) == 5
    error_message = "cleanup_schedule must be a five-field cron expression like */5 * * * *."
  }
}

variable "request_timeout" {
  description = "Seconds one request may take: each app's Code Engine request timeout and the gateway's wait for a function (its nginx read timeout). The cleanup job's `bootfleet cleanup` waits 30 s longer and the job itself 60 s more, so a long pass is never reported failed while it carries on."
  type        = number
  default     = 120

  validation {
    # Code Engine: an app's request timeout is at most 600 s (its limits, Application defaults and limits).
    condition     = var.request_timeout >= 30 && var.request_timeout <= 600 && floor(var.request_timeout) == var.request_timeout
    error_message = "request_timeout must be a whole number of seconds from 30 to 600 (Code Engine's most for an app)."
  }
}

variable "settings" {
  description = "Tuning settings handed to every function (docs/operations.md has what each means)."
  type = object({
    token_ttl         = optional(number, 21600)
    retry_seconds     = optional(number, 30)
    max_body_bytes    = optional(number, 1048576)
    db_timeout        = optional(number, 5)
    auto_migrate      = optional(bool, true)
    stage_timeouts    = optional(string, "")
    log_level         = optional(string, "INFO")
    discovery_profile = optional(string, "")
    cors_origin       = optional(string, "")
    cleanup_cap       = optional(number, 50)
    cleanup_grace     = optional(number, 3600)
    retention_days    = optional(number, 30)
    s3_url_ttl        = optional(number, 3600)
    dns_ttl           = optional(number, 300)
    dns_owner         = optional(string, "bootfleet")
    vpc_api_version   = optional(string, "")
    ibm_timeout       = optional(number, 30)
    ibm_retries       = optional(number, 5)
    ibm_backoff_ms    = optional(number, 1000)
    provision_batch   = optional(number, 50)
    # Who may get a token (docs/security.md): client CIDRs whose machines boot without an
    # enrolment secret. Empty: none (only servers bootfleet created, with their secret).
    boot_networks   = optional(string, "")
    boot_rate_limit = optional(number, 20)
    discovery_cap   = optional(number, 50)

    # unknown machines at boot: how many are kept, and one event per MAC this often
    unknown_max           = optional(number, 10000)
    unknown_event_seconds = optional(number, 300)
    unknown_event_max     = optional(number, 20) # unknown-boot events per unknown_event_seconds, all MACs together

    # wrong admin or API tokens per client address a minute, then 429 (docs/security.md)
    admin_failure_limit = optional(number, 10)

    # the audit log's retention (days; 0 keeps all), and webhooks: where they may go (host
    # names, *.domains, CIDRs; empty: none can be registered), retries and the receiver's time
    audit_retention_days = optional(number, 365)
    webhook_allow        = optional(string, "")
    webhook_backoff      = optional(number, 30)
    webhook_max_attempts = optional(number, 12)
    webhook_timeout      = optional(number, 5)
  })
  default = {}

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], upper(var.settings.log_level))
    error_message = "settings.log_level must be DEBUG, INFO, WARNING or ERROR."
  }

  validation {
    condition     = var.settings.token_ttl >= 300 && var.settings.max_body_bytes >= 1024
    error_message = "settings: token_ttl >= 300 and max_body_bytes >= 1024."
  }
}
