# DNS Services: a private zone for node and deployment records, resolvable from the VPC.
# bootfleet's dns function writes the records (BOOTFLEET_DNS_PROVIDER=ibm); it owns only
# what it created.

resource "ibm_resource_instance" "dns" {
  name              = "${var.name}-dns"
  service           = "dns-svcs"
  plan              = "standard-dns"
  location          = "global"
  resource_group_id = data.ibm_resource_group.group.id
  tags              = var.tags
}

resource "ibm_dns_zone" "fleet" {
  name        = var.dns_zone
  instance_id = ibm_resource_instance.dns.guid
  description = "bootfleet: node and deployment records"
  label       = var.name
}

resource "ibm_dns_permitted_network" "fleet" {
  count = var.create_vpc || var.vpc_crn != "" ? 1 : 0

  instance_id = ibm_resource_instance.dns.guid
  zone_id     = ibm_dns_zone.fleet.zone_id
  vpc_crn     = var.create_vpc ? ibm_is_vpc.fleet[0].crn : var.vpc_crn
  type        = "vpc"
}
