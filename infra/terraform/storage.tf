# Cloud Object Storage: boot images (kernels, initrds) under the keys profiles name them by,
# at the bucket's root with no prefix of bootfleet's own: `bootfleet images upload --prefix
# debian vmlinuz` writes debian/vmlinuz, which a profile names as --kernel debian/vmlinuz (and
# the VSI disk image, image.tf, under vsi/). Nodes fetch images straight from here (presigned
# URLs, or images_base_url), never through a function.

resource "ibm_resource_instance" "cos" {
  name              = "${var.name}-cos"
  service           = "cloud-object-storage"
  plan              = "standard"
  location          = "global"
  resource_group_id = data.ibm_resource_group.group.id
  tags              = var.tags
}

resource "ibm_cos_bucket" "images" {
  bucket_name          = "${var.name}-images-${random_id.bucket_suffix.hex}"
  resource_instance_id = ibm_resource_instance.cos.id
  region_location      = var.region
  storage_class        = "smart"
  force_delete         = false

  object_versioning {
    enable = true
  }
}

# Bucket names are global across IBM Cloud.
resource "random_id" "bucket_suffix" {
  byte_length = 4
}

# HMAC credentials: the S3 API (boto3) and presigned URLs need them.
resource "ibm_resource_key" "images_hmac" {
  name                 = "${var.name}-images-hmac"
  role                 = "Writer"
  resource_instance_id = ibm_resource_instance.cos.id
  parameters           = { HMAC = true }
  tags                 = var.tags
}
