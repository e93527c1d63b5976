"""Where boot images live: `folder` (served by the local router) and `s3` (IBM Cloud Object Storage)."""
