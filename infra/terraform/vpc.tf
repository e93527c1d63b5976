# An example VPC whose bare metal servers network-boot through bootfleet: the servers'
# user_data is the chainloader pointing at the domain (the same script boot serves at
# /boot/boot.ipxe). bootfleet's own provisioner creates servers the same way.

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

resource "ibm_is_bare_metal_server" "node" {
  count = var.bare_metal_count

  name           = "${var.name}-node-${count.index}"
  profile        = var.bare_metal_profile
  image          = data.ibm_is_image.netboot[0].id
  zone           = var.zone
  keys           = [data.ibm_is_ssh_key.fleet[0].id]
  vpc            = ibm_is_vpc.fleet[0].id
  resource_group = data.ibm_resource_group.group.id
  tags           = concat(var.tags, ["bootfleet:owned"])
  user_data      = templatefile("${path.module}/chainloader.ipxe.tftpl", { base_url = local.base_url, retry_seconds = 10 })

  primary_network_interface {
    subnet = ibm_is_subnet.fleet[0].id
  }

  lifecycle {
    precondition {
      condition     = var.create_vpc && var.netboot_image != "" && var.ssh_key != ""
      error_message = "bare metal servers need create_vpc = true, a netboot_image and an ssh_key."
    }
  }
}
