-- unknown-boot events are counted per window (issue 26): a scan of made-up MACs adds at most
-- BOOTFLEET_UNKNOWN_EVENT_MAX of them every BOOTFLEET_UNKNOWN_EVENT_SECONDS (db/unknown.py).
CREATE INDEX event_unknown_boot_idx ON event (created_at) WHERE kind = 'unknown-boot';
