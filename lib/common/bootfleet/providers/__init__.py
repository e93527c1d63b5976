"""The systems bootfleet drives, one sub-package per kind (vpc, dns, storage), each a `base`
interface, one module per backend and `choose` (the backend the settings or a deployment name)."""
