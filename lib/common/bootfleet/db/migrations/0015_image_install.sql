-- Image installs (issue 22): a profile that names an OS image (storage key, SHA-256, raw size,
-- compression, target disk rule) for the bootfleet agent to write; a node's write progress; a
-- deployment's own requirements (each key overrides its profile's).

ALTER TABLE profile ADD COLUMN image jsonb;
ALTER TABLE node ADD COLUMN install_progress jsonb;
ALTER TABLE deployment ADD COLUMN requirements jsonb NOT NULL DEFAULT '{}';
