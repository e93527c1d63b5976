"""infra/terraform/image.tf: the VSI iPXE disk image imported from the images bucket, as
`bootfleet images build-ipxe-disk` writes it and docs/vpc.md describes it."""

from __future__ import annotations

import hcl2
from infra_support import ROOT

TERRAFORM = ROOT / "infra" / "terraform"


def unquote(value):
    """python-hcl2 keeps string literals quoted ('"is"'); expressions are "${...}"."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [unquote(v) for v in value]
    return value


def parsed(name: str) -> dict:
    with open(TERRAFORM / name) as f:
        return hcl2.load(f)


def blocks(tree: dict, kind: str) -> dict:
    found = {}
    for block in tree.get(kind, []):
        for rtype, named in block.items():
            for name, body in named.items():
                found[(unquote(rtype), unquote(name))] = {k: unquote(v) for k, v in body.items()}
    return found


def test_the_image_is_imported_from_the_images_bucket_once_cos_lets_vpc_read_it():
    resources = blocks(parsed("image.tf"), "resource")
    image = resources[("ibm_is_image", "ipxe_disk")]
    assert image["href"] == "cos://${var.region}/${ibm_cos_bucket.images.bucket_name}/${var.vsi_ipxe_image_object}"
    assert image["operating_system"] == "${var.vsi_ipxe_image_os}"
    assert "source_volume" not in image  # href and source_volume exclude each other
    policy = resources[("ibm_iam_authorization_policy", "image_reads_cos")]
    assert (policy["source_service_name"], policy["source_resource_type"], policy["target_service_name"]) == \
        ("is", "image", "cloud-object-storage")
    assert policy["roles"] == ["Reader"] and "ibm_resource_instance.cos.guid" in policy["target_resource_instance_id"]
    assert "ibm_iam_authorization_policy.image_reads_cos" in image["depends_on"][0]
    # Nothing is imported unless the object is named.
    assert all("var.vsi_ipxe_image_object" in body["count"] for body in (image, policy))


def test_the_imported_image_is_the_one_the_provisioner_uses():
    main = (TERRAFORM / "main.tf").read_text()
    assert "BOOTFLEET_VPC_VSI_IMAGE   = local.vsi_ipxe_image_id" in main
    local = parsed("image.tf")["locals"][0]["vsi_ipxe_image_id"]
    assert "ibm_is_image.ipxe_disk[0].id" in local and "data.ibm_is_image.vsi_ipxe[0].id" in local


def test_the_object_key_is_validated_like_an_image_key():
    variable = parsed("image.tf")["variable"][0]['"vsi_ipxe_image_object"']
    assert unquote(variable["default"]) == "" and "qcow2" in variable["validation"][0]["condition"]
