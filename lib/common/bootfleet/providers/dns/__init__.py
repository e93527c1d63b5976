"""Where DNS records live: `ibm` (IBM Cloud DNS Services) and `rfc2136` (BIND and friends)."""
