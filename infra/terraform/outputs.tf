output "base_url" {
  description = "bootfleet's public URL (BOOTFLEET_BASE_URL)."
  value       = local.base_url
}

output "chainloader_url" {
  description = "The iPXE chainloader: `chain` it from an iPXE on a boot network (settings.boot_networks); servers a deployment creates get it, with their enrolment secret, in their user data."
  value       = "${local.base_url}/boot/boot.ipxe"
}

output "dashboard_url" {
  description = "The dashboard."
  value       = "${local.base_url}/"
}

output "operator_api_url" {
  description = "The operator API (BOOTFLEET_URL for the bootfleet command)."
  value       = "${local.base_url}/config/api/v1/"
}

output "domain_cname_target" {
  description = "Point a CNAME for the domain at this name, in the domain's public DNS."
  value       = ibm_code_engine_domain_mapping.gateway.cname_target
}

output "gateway_url" {
  description = "The gateway app's own Code Engine URL (before the CNAME exists)."
  value       = ibm_code_engine_app.gateway.endpoint
}

output "function_urls" {
  description = "Each function app's project-private URL (what the gateway routes to)."
  value       = { for name, app in ibm_code_engine_app.function : name => app.endpoint_internal }
}

output "project_id" {
  description = "The Code Engine project (ibmcloud ce project select --id ...)."
  value       = local.project_id
}

output "images_bucket" {
  description = "The COS bucket for boot images (BOOTFLEET_S3_BUCKET). Keys are the ones profiles name, at the bucket's root: bootfleet images upload --prefix debian vmlinuz initrd.img writes debian/vmlinuz and debian/initrd.img."
  value       = ibm_cos_bucket.images.bucket_name
}

output "dns_zone_id" {
  description = "The DNS Services zone for node records."
  value       = ibm_dns_zone.fleet.zone_id
}

output "dns_instance_id" {
  description = "The DNS Services instance's GUID: grant bootfleet's service ID Manager on it after the first apply (ibmcloud iam service-policy-create ... --service-name dns-svcs --service-instance <this>; docs/deployment.md)."
  value       = ibm_resource_instance.dns.guid
}

output "database_crn" {
  description = "The Databases for PostgreSQL deployment's CRN (ibmcloud cdb deployment-backups-list, earliest-pitr-timestamp, a restore's point_in_time_recovery_deployment_id); null with database_url."
  value       = local.create_database ? ibm_database.postgres[0].id : null
}

output "public_gateway_address" {
  description = "The example subnet's public gateway address: the client address bootfleet sees for its machines through the public domain (a boot network, settings.boot_networks = \"<this>/32\"); null with create_vpc = false."
  value       = var.create_vpc ? ibm_is_public_gateway.fleet[0].floating_ip["address"] : null
}

output "vpc_id" {
  description = "The example VPC's id (a deployment's placement.vpc); null with create_vpc = false."
  value       = var.create_vpc ? ibm_is_vpc.fleet[0].id : null
}

output "subnet_id" {
  description = "The example subnet's id, in zone (a deployment's placement.subnet); null with create_vpc = false."
  value       = var.create_vpc ? ibm_is_subnet.fleet[0].id : null
}

output "placement" {
  description = "A --provider ibm deployment's placement in the example VPC: zone, vpc, subnet, profile, resource_group and keys (docs/vpc.md, Placement)."
  value       = local.placement
}

output "placement_flags" {
  description = "The placement as bootfleet options: bootfleet deployment create --name web --profile worker --provider ibm --count 3 $(terraform output -raw placement_flags)."
  value       = join(" ", [for key, value in local.placement : "--placement ${key}=${value}"])
}

output "admin_token" {
  description = "The operators' bearer token (terraform output -raw admin_token)."
  value       = random_password.admin_token.result
  sensitive   = true
}

output "s3_endpoint" {
  description = "COS's public S3 endpoint (BOOTFLEET_S3_ENDPOINT for `bootfleet images upload` on your machine)."
  value       = local.cos_public_endpoint
}

output "s3_region" {
  description = "The bucket's region (BOOTFLEET_S3_REGION for `bootfleet images upload` on your machine)."
  value       = var.region
}

output "s3_access_key_id" {
  description = "HMAC access key of the images bucket (BOOTFLEET_S3_ACCESS_KEY_ID)."
  value       = ibm_resource_key.images_hmac.credentials["cos_hmac_keys.access_key_id"]
  sensitive   = true
}

output "s3_secret_access_key" {
  description = "HMAC secret key of the images bucket (BOOTFLEET_S3_SECRET_ACCESS_KEY)."
  value       = ibm_resource_key.images_hmac.credentials["cos_hmac_keys.secret_access_key"]
  sensitive   = true
}
