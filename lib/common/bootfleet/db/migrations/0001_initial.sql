-- bootfleet: the data model (profiles, deployments, nodes, events, DNS records).

CREATE TABLE profile (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text NOT NULL UNIQUE,
    kernel        text NOT NULL,
    initrds       text[] NOT NULL DEFAULT '{}',
    args          text NOT NULL DEFAULT '',
    config_format text NOT NULL DEFAULT 'none'
                  CHECK (config_format IN ('none', 'ignition', 'cloud-init')),
    config_template text NOT NULL DEFAULT '',
    selectors     jsonb NOT NULL DEFAULT '{}',
    metadata      jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE deployment (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text NOT NULL UNIQUE,
    profile_id    uuid NOT NULL REFERENCES profile(id),
    provider      text NOT NULL DEFAULT 'none',
    dns_zone      text,
    placement     jsonb NOT NULL DEFAULT '{}',
    spec          jsonb NOT NULL DEFAULT '{}',
    desired_count integer NOT NULL DEFAULT 0 CHECK (desired_count >= 0),
    state         text NOT NULL DEFAULT 'active'
                  CHECK (state IN ('active', 'deleting', 'deleted')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);

CREATE TABLE node (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    deployment_id uuid REFERENCES deployment(id),
    profile_id    uuid REFERENCES profile(id),
    hostname      text,
    smbios_uuid   text,
    serial        text,
    instance_id   text,
    ip            text,
    labels        jsonb NOT NULL DEFAULT '{}',
    stage         text NOT NULL DEFAULT 'registered',
    stage_changed_at timestamptz NOT NULL DEFAULT now(),
    stage_times   jsonb NOT NULL DEFAULT '{}',
    token_version integer NOT NULL DEFAULT 1,
    last_seen     timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX node_deployment_idx ON node (deployment_id, stage);
CREATE INDEX node_stage_idx ON node (stage, stage_changed_at);
CREATE UNIQUE INDEX node_smbios_uuid_idx ON node (smbios_uuid) WHERE smbios_uuid IS NOT NULL;

-- A MAC belongs to one node; stored normalised (lower case, colon separated).
CREATE TABLE node_mac (
    mac     text PRIMARY KEY CHECK (mac ~ '^([0-9a-f]{2}:){5}[0-9a-f]{2}$'),
    node_id uuid NOT NULL REFERENCES node(id) ON DELETE CASCADE
);
CREATE INDEX node_mac_node_idx ON node_mac (node_id);

CREATE TABLE event (
    id            bigserial PRIMARY KEY,
    node_id       uuid,
    deployment_id uuid,
    stage         text,
    kind          text NOT NULL,
    message       text NOT NULL DEFAULT '',
    source        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_node_idx ON event (node_id, id);
CREATE INDEX event_deployment_idx ON event (deployment_id, id);
CREATE INDEX event_created_idx ON event (created_at);

CREATE TABLE dns_record (
    id            bigserial PRIMARY KEY,
    zone          text NOT NULL,
    name          text NOT NULL,
    type          text NOT NULL,
    value         text NOT NULL,
    provider_id   text,
    node_id       uuid,
    deployment_id uuid,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (zone, name, type, value)
);
