-- Scoped API tokens (issue 23): each has a name and a role; only its SHA-256 is kept.
-- The bootstrap admin token (BOOTFLEET_ADMIN_TOKEN) is a setting, not a row.

CREATE TABLE api_token (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    role          text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer', 'metrics')),
    token_hash    text NOT NULL UNIQUE,
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
-- A name names one live token; a revoked token's name may be used again.
CREATE UNIQUE INDEX api_token_live_name_idx ON api_token (name) WHERE revoked_at IS NULL;
