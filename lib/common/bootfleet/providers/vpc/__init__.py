"""Where a deployment's servers come from: `ibm` (IBM Cloud VPC) and `local` (QEMU on this host)."""
