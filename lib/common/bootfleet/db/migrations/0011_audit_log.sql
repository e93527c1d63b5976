-- The audit log (issue 23): every change an operator asks for through the API, who asked (the
-- token's name), what it changed (old and new values, never a secret), and how it ended.

CREATE TABLE audit_log (
    id             bigserial PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    actor          text NOT NULL,
    role           text NOT NULL,
    action         text NOT NULL,
    target         text NOT NULL DEFAULT '',
    changes        jsonb NOT NULL DEFAULT '{}',
    outcome        text NOT NULL,
    status         integer,  -- the answer's; null: the change committed, its answer not recorded
    client_address text,
    request_id     text NOT NULL,
    method         text NOT NULL,
    path           text NOT NULL
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, id);
CREATE INDEX audit_log_target_idx ON audit_log (target text_pattern_ops, id);
