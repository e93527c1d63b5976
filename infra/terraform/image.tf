# The iPXE disk image virtual servers (VSIs) boot. A VSI cannot run iPXE user data the way a
# bare metal server does, so its image carries the chainloader:
#
#   bootfleet images build-ipxe-disk --url https://<domain>          # bootfleet-ipxe.qcow2
#   bootfleet images upload --key vsi/bootfleet-ipxe.qcow2 bootfleet-ipxe.qcow2   # into the images bucket
#   terraform apply -var vsi_ipxe_image_object=vsi/bootfleet-ipxe.qcow2
#
# VPC imports the object from COS (ibm_is_image with a cos:// href), which needs the image
# service to be allowed to read the COS instance (the authorization policy below). The image's
# id becomes BOOTFLEET_VPC_VSI_IMAGE (main.tf); docs/vpc.md has the rest.

variable "vsi_ipxe_image_object" {
  description = "Key of the image `bootfleet images build-ipxe-disk` wrote, uploaded to the images bucket (e.g. vsi/bootfleet-ipxe.qcow2). Empty: no image is imported (vsi_ipxe_image may name an existing one)."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([A-Za-z0-9._+=-]+/)*[A-Za-z0-9._+=-]+\\.(qcow2|vhd)$", var.vsi_ipxe_image_object)) || var.vsi_ipxe_image_object == ""
    error_message = "vsi_ipxe_image_object is an object key ending in .qcow2 (or .vhd), e.g. vsi/bootfleet-ipxe.qcow2."
  }
}

variable "vsi_ipxe_image_os" {
  description = "The operating system VPC records for the iPXE image (ibmcloud is operating-systems); iPXE itself has none, so name the one the nodes install."
  type        = string
  default     = "debian-12-amd64"

  validation {
    condition     = can(regex("^[a-z0-9-]+$", var.vsi_ipxe_image_os))
    error_message = "vsi_ipxe_image_os is a VPC operating system name, e.g. debian-12-amd64."
  }
}

# The VPC image service reads the image file from the COS instance.
resource "ibm_iam_authorization_policy" "image_reads_cos" {
  count = var.vsi_ipxe_image_object == "" ? 0 : 1

  source_service_name         = "is"
  source_resource_type        = "image"
  target_service_name         = "cloud-object-storage"
  target_resource_instance_id = ibm_resource_instance.cos.guid
  roles                       = ["Reader"]
  description                 = "VPC imports the bootfleet iPXE disk image from the images bucket"
}

resource "ibm_is_image" "ipxe_disk" {
  count = var.vsi_ipxe_image_object == "" ? 0 : 1

  name             = "${var.name}-ipxe"
  href             = "cos://${var.region}/${ibm_cos_bucket.images.bucket_name}/${var.vsi_ipxe_image_object}"
  operating_system = var.vsi_ipxe_image_os
  resource_group   = data.ibm_resource_group.group.id
  tags             = var.tags

  depends_on = [ibm_iam_authorization_policy.image_reads_cos]
}

locals {
  # BOOTFLEET_VPC_VSI_IMAGE: the image imported here, else the existing one vsi_ipxe_image names, else none.
  vsi_ipxe_image_id = (var.vsi_ipxe_image_object != "" ? ibm_is_image.ipxe_disk[0].id :
  var.vsi_ipxe_image != "" ? data.ibm_is_image.vsi_ipxe[0].id : "")
}
