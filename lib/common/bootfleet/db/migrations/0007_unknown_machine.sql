-- Machines that asked boot for a script but are not registered (issue 16): one row per MAC,
-- upserted by db/unknown.py, capped in size (BOOTFLEET_UNKNOWN_MAX), adopted into nodes.

CREATE TABLE unknown_machine (
    mac           text PRIMARY KEY CHECK (mac ~ '^([0-9a-f]{2}:){5}[0-9a-f]{2}$'),
    first_seen    timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz NOT NULL DEFAULT now(),
    attempts      integer NOT NULL DEFAULT 1,
    last_address  text,
    last_reason   text NOT NULL DEFAULT '',
    last_event_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX unknown_machine_last_seen_idx ON unknown_machine (last_seen);
