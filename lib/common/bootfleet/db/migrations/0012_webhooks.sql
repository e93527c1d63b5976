-- Signed webhooks (issue 23): endpoints, and an outbox of deliveries written by a trigger in the
-- same transaction as the event itself, so no event is lost when a function dies after it.

CREATE TABLE webhook (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    url         text NOT NULL,
    events      text[] NOT NULL CHECK (cardinality(events) > 0),
    secret      text NOT NULL,  -- the HMAC-SHA256 key; kept as it is, since every delivery is signed with it
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_delivery (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),  -- X-Bootfleet-Delivery: the receiver drops repeats by it
    webhook_id      uuid NOT NULL REFERENCES webhook(id) ON DELETE CASCADE,
    event_id        bigint NOT NULL,
    event           text NOT NULL,
    payload         jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX webhook_delivery_due_idx ON webhook_delivery (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_delivery_hook_idx ON webhook_delivery (webhook_id, created_at);

CREATE TABLE webhook_attempt (
    id           bigserial PRIMARY KEY,
    delivery_id  uuid NOT NULL REFERENCES webhook_delivery(id) ON DELETE CASCADE,
    at           timestamptz NOT NULL DEFAULT now(),
    status       integer,         -- the receiver's HTTP status; null: no answer
    error        text,
    duration_ms  integer NOT NULL DEFAULT 0
);
CREATE INDEX webhook_attempt_delivery_idx ON webhook_attempt (delivery_id, id);

-- An event's name for webhooks: node.<stage> for a node's stage change (node.ready, node.failed),
-- else <kind>.<verb> from its message (deployment.created, profile.deleted), else <kind>.event.
CREATE FUNCTION bootfleet_event_name(kind text, stage text, message text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN kind = 'stage' AND stage IS NOT NULL THEN 'node.' || stage
        ELSE kind || '.' || coalesce(substring(message FROM '\m(created|updated|deleted|imported|scaled)\M'), 'event')
    END
$$;

CREATE FUNCTION bootfleet_webhook_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    event_name text := bootfleet_event_name(NEW.kind, NEW.stage, NEW.message);
BEGIN
    INSERT INTO webhook_delivery (webhook_id, event_id, event, payload)
    SELECT w.id, NEW.id, event_name, jsonb_build_object(
        'event', event_name, 'event_id', NEW.id, 'kind', NEW.kind, 'stage', NEW.stage, 'node_id', NEW.node_id,
        'deployment_id', NEW.deployment_id, 'message', NEW.message, 'source', NEW.source,
        'created_at', NEW.created_at)
    FROM webhook w
    WHERE w.active AND EXISTS (
        SELECT 1 FROM unnest(w.events) AS p
        WHERE p = '*' OR p = event_name OR (right(p, 2) = '.*' AND starts_with(event_name, left(p, -1))));
    RETURN NULL;
END
$$;

CREATE TRIGGER event_webhook_outbox AFTER INSERT ON event
    FOR EACH ROW EXECUTE FUNCTION bootfleet_webhook_outbox();
