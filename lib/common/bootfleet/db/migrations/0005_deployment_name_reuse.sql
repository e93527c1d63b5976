-- A deleted deployment no longer holds its name: only live (active or deleting) deployments
-- are unique by name, so a name can be used again once its deployment is deleted.
ALTER TABLE deployment DROP CONSTRAINT deployment_name_key;
CREATE UNIQUE INDEX deployment_live_name_idx ON deployment (name) WHERE state <> 'deleted';
