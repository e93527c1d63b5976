# An example VPC, subnet and public gateway for the fleet. The servers themselves are not made
# here: a bootfleet deployment creates them (`bootfleet deployment create --provider ibm` with
# the placement output below), because only a server bootfleet created carries an enrolment
# secret in its user data, and with the default boot_networks ("none") nothing else gets a
# node token (docs/security.md). A server made here would be refused at every boot.

locals {
  # The subnet must lie inside an address prefix of its VPC in its zone. By default the
  # VPC has automatic prefixes (one per zone, e.g. 10.240.0.0/18 in us-south-1) and the
  # subnet asks for a number of addresses from it; with subnet_cidr the VPC manages its
  # prefixes by hand and gets exactly that one.
  manual_prefix = var.subnet_cidr != ""
}

resource "ibm_is_vpc" "fleet" {
  count = var.create_vpc ? 1 : 0

  name                      = "${var.name}-vpc"
  resource_group            = data.ibm_resource_group.group.id
  address_prefix_management = local.manual_prefix ? "manual" : "auto"
  tags                      = var.tags
}

resource "ibm_is_vpc_address_prefix" "fleet" {
  count = var.create_vpc && local.manual_prefix ? 1 : 0

  name       = "${var.name}-${var.zone}"
  vpc        = ibm_is_vpc.fleet[0].id
  zone       = var.zone
  cidr       = var.subnet_cidr
  is_default = true
}

# Nodes reach the domain and COS over the internet.
resource "ibm_is_public_gateway" "fleet" {
  count = var.create_vpc ? 1 : 0

  name           = "${var.name}-gateway"
  vpc            = ibm_is_vpc.fleet[0].id
  zone           = var.zone
  resource_group = data.ibm_resource_group.group.id
  tags           = var.tags
}

resource "ibm_is_subnet" "fleet" {
  count = var.create_vpc ? 1 : 0

  name                     = "${var.name}-subnet"
  vpc                      = ibm_is_vpc.fleet[0].id
  zone                     = var.zone
  ipv4_cidr_block          = local.manual_prefix ? ibm_is_vpc_address_prefix.fleet[0].cidr : null
  total_ipv4_address_count = local.manual_prefix ? null : var.subnet_address_count
  public_gateway           = ibm_is_public_gateway.fleet[0].id
  resource_group           = data.ibm_resource_group.group.id
  tags                     = var.tags
}

data "ibm_is_image" "netboot" {
  count = var.netboot_image == "" ? 0 : 1

  name = var.netboot_image
}

data "ibm_is_image" "vsi_ipxe" {
  count = var.vsi_ipxe_image == "" ? 0 : 1

  name = var.vsi_ipxe_image
}

data "ibm_is_ssh_key" "fleet" {
  count = var.ssh_key == "" ? 0 : 1

  name = var.ssh_key
}

# What a `--provider ibm` deployment's placement needs (docs/vpc.md, Placement): the zone, the
# VPC and subnet ids, the profile, the resource group id (the service ID's policies are on it),
# and the SSH key's id when ssh_key names one. The VPC and subnet are empty with create_vpc = false:
# give your own VPC's ids.
locals {
  placement_ids = {
    zone           = var.zone
    vpc            = var.create_vpc ? ibm_is_vpc.fleet[0].id : null
    subnet         = var.create_vpc ? ibm_is_subnet.fleet[0].id : null
    profile        = var.bare_metal_profile
    resource_group = data.ibm_resource_group.group.id
    keys           = var.ssh_key == "" ? null : data.ibm_is_ssh_key.fleet[0].id
  }
  placement = { for key, value in local.placement_ids : key => value if value != null }
}
