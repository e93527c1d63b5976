-- Issue 12: a machine proves who it is before it gets a token.
--
-- secret_hash: SHA-256 (hex) of the per-server enrolment secret bootfleet put in the
--   user data of a server it created; boot answers such a node only with that secret.
-- discovered: the node was registered by boot under the discovery profile (capped).
-- require_secret: a profile or deployment whose nodes must present an enrolment secret
--   (no trusted-network answer for them).
ALTER TABLE node ADD COLUMN secret_hash text CHECK (secret_hash ~ '^[0-9a-f]{64}$');
ALTER TABLE node ADD COLUMN discovered boolean NOT NULL DEFAULT false;
ALTER TABLE profile ADD COLUMN require_secret boolean NOT NULL DEFAULT false;
ALTER TABLE deployment ADD COLUMN require_secret boolean NOT NULL DEFAULT false;
CREATE INDEX node_discovered_idx ON node (stage) WHERE discovered;
