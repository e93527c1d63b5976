# Code Engine: one project; one app per function from the one image (FUNCTION_TARGET picks
# the function, scale to zero); the gateway app (the same image running nginx with
# infra/nginx) behind the domain mapping, because Code Engine has no path routing.

resource "ibm_code_engine_project" "bootfleet" {
  name              = var.name
  resource_group_id = data.ibm_resource_group.group.id
}

locals {
  project_id   = ibm_code_engine_project.bootfleet.project_id
  image_secret = var.registry_api_key == "" ? null : ibm_code_engine_secret.registry[0].name
  image_host   = split("/", var.image)[0]

  # gunicorn in each function's container: a process per whole vCPU (one saturates one), threads
  # for its share of the container concurrency, a database pool as large as its threads (a request
  # never waits for a connection). The most connections the apps can open: every instance of every
  # app at once, plus the one cleanup holds its lock on.
  function_workers     = { for name, f in var.functions : name => max(1, floor(tonumber(f.cpu))) }
  function_threads     = { for name, f in var.functions : name => ceil(f.concurrency / local.function_workers[name]) }
  function_connections = [for name, f in var.functions : f.max_instances * local.function_workers[name] * local.function_threads[name]]
  database_connections = 1 + sum(local.function_connections)

  # One request's time limit, longest last: the function app and the gateway's wait for it
  # (request_timeout), then `bootfleet cleanup` in the cron job (longer, so it hears the pass's
  # answer or the gateway's 504 rather than giving up first), then the job run itself.
  cleanup_wait    = var.request_timeout + 30
  cleanup_job_max = local.cleanup_wait + 60
}

# Pulls the image from a private registry (Container Registry: user iamapikey).
resource "ibm_code_engine_secret" "registry" {
  count = var.registry_api_key == "" ? 0 : 1

  project_id = local.project_id
  name       = "${var.name}-registry"
  format     = "registry"
  data = {
    server   = local.image_host
    username = "iamapikey"
    password = var.registry_api_key
    email    = "bootfleet@${var.domain}" # required by the format, unused by the registry
  }
}

resource "ibm_code_engine_config_map" "settings" {
  project_id = local.project_id
  name       = "${var.name}-settings"
  data       = { for name, value in local.settings : name => value if value != "" }
}

resource "ibm_code_engine_secret" "settings" {
  project_id = local.project_id
  name       = "${var.name}-secrets"
  format     = "generic"
  data       = { for name, value in local.secret_settings : name => value if value != "" }
}

# The database's CA, mounted as a file for sslmode=verify-full.
resource "ibm_code_engine_secret" "database_ca" {
  count = local.database_ca == "" ? 0 : 1

  project_id = local.project_id
  name       = "${var.name}-database-ca"
  format     = "generic"
  data       = { "ca.crt" = local.database_ca }
}

resource "ibm_code_engine_app" "function" {
  for_each = var.functions

  project_id      = local.project_id
  name            = "${var.name}-${each.key}"
  image_reference = var.image
  image_secret    = local.image_secret
  image_port      = 8080
  run_as_user     = 10001
  # Reachable only inside the project: the world comes in through the gateway.
  managed_domain_mappings = "local"

  scale_cpu_limit          = each.value.cpu
  scale_memory_limit       = each.value.memory
  scale_min_instances      = each.value.min_instances
  scale_max_instances      = each.value.max_instances
  scale_concurrency        = each.value.concurrency
  scale_concurrency_target = max(1, floor(each.value.concurrency * 0.8)) # a new instance before this one queues
  scale_request_timeout    = var.request_timeout

  run_env_variables {
    type  = "literal"
    name  = "FUNCTION_TARGET"
    value = each.key
  }

  run_env_variables { # functions-framework's gunicorn processes and threads
    type  = "literal"
    name  = "WORKERS"
    value = tostring(local.function_workers[each.key])
  }

  run_env_variables {
    type  = "literal"
    name  = "THREADS"
    value = tostring(local.function_threads[each.key])
  }

  run_env_variables {
    type  = "literal"
    name  = "BOOTFLEET_DB_POOL_SIZE"
    value = tostring(local.function_threads[each.key])
  }

  run_env_variables {
    type      = "config_map_full_reference"
    reference = ibm_code_engine_config_map.settings.name
  }

  run_env_variables {
    type      = "secret_full_reference"
    reference = ibm_code_engine_secret.settings.name
  }

  dynamic "run_volume_mounts" {
    for_each = ibm_code_engine_secret.database_ca
    content {
      name       = "database-ca"
      mount_path = dirname(local.database_ca_path)
      reference  = run_volume_mounts.value.name
      type       = "secret"
    }
  }

  probe_readiness {
    type = "tcp"
    port = 8080
  }

  lifecycle {
    precondition {
      condition     = local.database_connections <= var.database_connection_limit
      error_message = "the function apps could open ${local.database_connections} database connections (max_instances x concurrency, summed), more than database_connection_limit (${var.database_connection_limit}): lower max_instances or concurrency, or raise the database's max_connections and database_connection_limit (docs/deployment.md, Sizing)."
    }
  }
}

# Where the gateway sends each prefix: every function app's project-private URL.
resource "ibm_code_engine_config_map" "gateway" {
  project_id = local.project_id
  name       = "${var.name}-gateway"
  data = merge(
    { for name, app in ibm_code_engine_app.function : "BOOTFLEET_UPSTREAM_${upper(name)}" => app.endpoint_internal },
    {
      BOOTFLEET_MAX_BODY_BYTES  = tostring(var.settings.max_body_bytes)
      BOOTFLEET_BOOT_RATE_LIMIT = tostring(var.settings.boot_rate_limit)
      # Code Engine's own hops, skipped to find the client (bootfleet doctor shows the result).
      BOOTFLEET_GATEWAY_TRUSTED_HOPS = join(",", var.gateway_trusted_hops)
      # nginx's proxy_read_timeout (infra/container/entrypoint.sh): as long as the apps' own
      BOOTFLEET_GATEWAY_READ_TIMEOUT = tostring(var.request_timeout)
    },
  )
}

resource "ibm_code_engine_secret" "gateway" {
  project_id = local.project_id
  name       = "${var.name}-gateway-secret"
  format     = "generic"
  data       = { BOOTFLEET_GATEWAY_SECRET = random_password.gateway_secret.result }
}

resource "ibm_code_engine_app" "gateway" {
  project_id              = local.project_id
  name                    = "${var.name}-gateway"
  image_reference         = var.image
  image_secret            = local.image_secret
  image_port              = 8080
  run_as_user             = 10001
  managed_domain_mappings = "local_public"

  scale_cpu_limit       = "0.25"
  scale_memory_limit    = "0.5G"
  scale_min_instances   = var.gateway_min_instances
  scale_max_instances   = 10
  scale_request_timeout = var.request_timeout

  run_env_variables {
    type  = "literal"
    name  = "FUNCTION_TARGET"
    value = "gateway"
  }

  run_env_variables {
    type      = "config_map_full_reference"
    reference = ibm_code_engine_config_map.gateway.name
  }

  run_env_variables {
    type      = "secret_full_reference"
    reference = ibm_code_engine_secret.gateway.name
  }

  probe_readiness {
    type = "http"
    path = "/healthz"
    port = 8080
  }
}

resource "ibm_code_engine_secret" "tls" {
  project_id = local.project_id
  name       = "${var.name}-tls"
  format     = "tls"
  data = {
    tls_cert = var.tls_certificate
    tls_key  = var.tls_private_key
  }
}

# The domain: TLS ends here, then the gateway routes by prefix.
resource "ibm_code_engine_domain_mapping" "gateway" {
  project_id = local.project_id
  name       = var.domain
  tls_secret = ibm_code_engine_secret.tls.name

  component {
    name          = ibm_code_engine_app.gateway.name
    resource_type = "app_v2"
  }
}

# Cleanup on a schedule. The provider has no resource for Code Engine cron subscriptions,
# so the ibmcloud CLI makes one (scripts/cleanup-cron.sh). It starts this job, never
# the app: the job's `bootfleet cleanup` POSTs /cleanup/run through the gateway with the
# cron secret as its bearer token, taken from the settings secret into the job's
# environment. So the secret is on no command line (the CLI's, or a process list), and
# the subscription carries no data at all.
resource "ibm_code_engine_job" "cleanup" {
  project_id      = local.project_id
  name            = "${var.name}-cleanup-cron"
  image_reference = var.image
  image_secret    = local.image_secret
  run_as_user     = 10001
  run_commands    = ["bootfleet"]
  run_arguments   = ["cleanup", "--timeout", tostring(local.cleanup_wait)]
  run_mode        = "task"

  scale_cpu_limit          = "0.25"
  scale_memory_limit       = "0.5G"
  scale_max_execution_time = local.cleanup_job_max
  scale_retry_limit        = 0

  run_env_variables {
    type  = "literal"
    name  = "BOOTFLEET_URL"
    value = ibm_code_engine_app.gateway.endpoint_internal
  }

  # The cron secret, as the token `bootfleet cleanup` sends (and nothing else from the secret).
  run_env_variables {
    type      = "secret_key_reference"
    name      = "BOOTFLEET_ADMIN_TOKEN"
    reference = ibm_code_engine_secret.settings.name
    key       = "BOOTFLEET_CRON_SECRET"
  }
}

resource "terraform_data" "cleanup_cron" {
  triggers_replace = {
    project_id = local.project_id
    job        = ibm_code_engine_job.cleanup.name
    schedule   = var.cleanup_schedule
  }

  input = {
    name           = "${var.name}-cleanup"
    project_id     = local.project_id
    region         = var.region
    resource_group = var.resource_group
  }

  provisioner "local-exec" {
    command = "${path.module}/scripts/cleanup-cron.sh apply"
    environment = {
      IBMCLOUD_API_KEY = var.ibmcloud_api_key
      REGION           = var.region
      RESOURCE_GROUP   = var.resource_group
      PROJECT_ID       = local.project_id
      SUBSCRIPTION     = "${var.name}-cleanup"
      JOB              = ibm_code_engine_job.cleanup.name
      SCHEDULE         = var.cleanup_schedule
    }
  }

  # A destroy-time step may use only `self`, so it cannot be handed the API key: the
  # script takes it from the environment terraform runs in (IBMCLOUD_API_KEY or
  # IC_API_KEY, which the provider reads too), or an `ibmcloud login` session.
  provisioner "local-exec" {
    when    = destroy
    command = "${path.module}/scripts/cleanup-cron.sh delete"
    environment = {
      REGION         = self.input.region
      RESOURCE_GROUP = self.input.resource_group
      PROJECT_ID     = self.input.project_id
      SUBSCRIPTION   = self.input.name
    }
  }
}
