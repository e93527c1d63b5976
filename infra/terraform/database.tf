# Databases for PostgreSQL, unless database_url names an existing PostgreSQL.

locals {
  create_database  = var.database_url == ""
  database_ca_path = "/etc/bootfleet/db/ca.crt"

  created_database = local.create_database ? data.ibm_database_connection.postgres[0].postgres[0] : null
  database_url = local.create_database ? format(
    "postgresql://%s@%s:%d%s?sslmode=verify-full&sslrootcert=%s",
    join(":", ["bootfleet", urlencode(random_password.database[0].result)]),
    local.created_database.hosts[0].hostname,
    local.created_database.hosts[0].port,
    local.created_database.path,
    local.database_ca_path,
  ) : var.database_url
  database_ca = local.create_database ? base64decode(local.created_database.certificate[0].certificate_base64) : var.database_ca_certificate
}

# IBM Cloud Databases wants 15 to 32 characters with a letter and a number; the minimums
# make sure the generated one has both (and no character a URL would need escaped).
resource "random_password" "database" {
  count = local.create_database ? 1 : 0

  length      = 32
  special     = false
  min_numeric = 2
  min_lower   = 2
  min_upper   = 2
}

resource "ibm_database" "postgres" {
  count = local.create_database ? 1 : 0

  name              = "${var.name}-postgres"
  service           = "databases-for-postgresql"
  plan              = "standard"
  location          = var.region
  resource_group_id = data.ibm_resource_group.group.id
  service_endpoints = var.database_endpoint
  tags              = var.tags

  group {
    group_id = "member"

    memory {
      allocation_mb = var.database_memory_mb
    }

    disk {
      allocation_mb = var.database_disk_mb
    }
  }

  users {
    name     = "bootfleet"
    password = random_password.database[0].result
    type     = "database"
  }

  timeouts {
    create = "120m"
    update = "60m"
    delete = "20m"
  }
}

data "ibm_database_connection" "postgres" {
  count = local.create_database ? 1 : 0

  deployment_id = ibm_database.postgres[0].id
  user_type     = "database"
  user_id       = "bootfleet"
  endpoint_type = var.database_endpoint
}
