-- Inventory and requirements (issue 22): a node's last hardware report, the requirements a
-- profile states, why a node is held, and an operator's override of one node's requirements.

ALTER TABLE node
    ADD COLUMN inventory jsonb,
    ADD COLUMN inventory_at timestamptz,
    ADD COLUMN requirement_failures jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN requirements_override boolean NOT NULL DEFAULT false;

ALTER TABLE profile
    ADD COLUMN requirements jsonb NOT NULL DEFAULT '{}';
