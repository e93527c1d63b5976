-- The node-script request's one round trip as functions (issue 24; db/boot.py). The same
-- decisions and writes as the WITH statement it replaces, but a function runs only the branch
-- a request needs (a node that proves itself never pays for the unknown-machine bookkeeping or
-- the refusal check) and answers only the columns boot needs: its profile and deployment are
-- named by id and row version (xmin, new with every change to the row) and read from the
-- process's cache, or once more when they changed.
-- The stage lists are stages.py's; tests/unit/test_boot_step_sql.py keeps them the same.

-- An attempt without proof, by MAC (db/unknown.py): the row upserted, the least recently seen
-- beyond the cap evicted, and (announce: no node has the MAC) an `unknown-boot` event at most
-- once per MAC every `quiet` seconds and at most `event_max` of them in that time for all MACs.
CREATE FUNCTION bootfleet_record_unknown(p_mac text, p_address text, p_reason text, p_quiet integer,
                                         p_cap integer, p_event_max integer, p_announce boolean)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    INSERT INTO unknown_machine AS u (mac, last_address, last_reason) VALUES (p_mac, p_address, left(p_reason, 500))
    ON CONFLICT (mac) DO UPDATE SET last_seen = now(), attempts = u.attempts + 1,
        last_address = EXCLUDED.last_address, last_reason = EXCLUDED.last_reason,
        last_event_at = CASE WHEN u.last_event_at < now() - make_interval(secs => p_quiet)
                             THEN now() ELSE u.last_event_at END
    RETURNING u.mac, (xmax = 0) AS inserted, (u.last_event_at = now()) AS announce, u.attempts INTO r;
    IF r.inserted THEN  -- this statement sees the new row: `cap` rows stay, it among them
        DELETE FROM unknown_machine WHERE mac IN (
            SELECT mac FROM unknown_machine ORDER BY last_seen DESC, mac OFFSET greatest(p_cap, 1));
    END IF;
    IF p_announce AND r.announce AND (
        SELECT count(*) FROM event e
        WHERE e.kind = 'unknown-boot' AND e.created_at > now() - make_interval(secs => p_quiet)) < p_event_max THEN
        INSERT INTO event (kind, message, source) VALUES ('unknown-boot',
            left('unknown machine ' || r.mac || ' tried to boot' || COALESCE(' from ' || p_address, '') || ': '
                 || p_reason || CASE WHEN r.inserted THEN '' ELSE ' (' || r.attempts || ' attempts so far)' END, 2000),
            'boot');
    END IF;
END
$$;

-- A node-script request's step: find the node by MAC (p_macs: comma-separated) or SMBIOS
-- UUID; decide whether the request proves it is this node's machine (docs/security.md); with
-- proof open an install (stage `booting`, a new token version, the stage event) when the node
-- is not booting yet, or move it to `rebooting` past its profile's installed_after, else note
-- it was seen; without proof a `boot-refused` event (one a minute per node) and the attempt
-- recorded by MAC. NULL: no node has the MAC or UUID (recorded when p_record is true).
-- p_limits: 'refusal quiet seconds,unknown quiet seconds,unknown cap,unknown events max' (db/boot.py),
-- read only on the paths that need them: the fewer parameters, the less a driver encodes.
-- p_rows: also the profile's and deployment's whole rows (a process's first request, which has
-- none cached: one round trip instead of three on a cold start).
-- One JSON object back (a driver decodes one value faster than twenty columns): the node's
-- fields a template may use, its stage before this step, its profile and deployment by id and
-- row version, why (refused: the reason), opens, installed, token_version, in_stage_s.
CREATE FUNCTION bootfleet_boot_step(p_macs text, p_uuid text, p_serial text, p_secret_hash text,
                                    p_trusted boolean, p_address text, p_record boolean, p_limits text,
                                    p_rows boolean)
RETURNS json
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    why text;
    opens boolean;
    installed boolean;
    deployment_version text;
    profile_version text;
    forward constant text[] := ARRAY['registered', 'provisioning', 'booting', 'configuring', 'installing',
                                     'rebooting', 'ready'];
    opens_install constant text[] := ARRAY['registered', 'provisioning', 'configuring', 'installing', 'held'];
    no_install constant text[] := ARRAY['rebooting', 'ready', 'failed', 'deprovisioning', 'deleted'];
    n record;  -- the node's row, and all_macs: its MACs, comma-separated
    one_mac text;
    located boolean := false;
    plan_profile uuid;
    deployment_requires boolean := false;
    profile_name text;
    profile_requires boolean := false;
    profile_installed_after text;
    installs boolean;
BEGIN
    -- One MAC at a time: `mac = $1` is a primary-key lookup in a generic plan, where
    -- `mac = ANY($1)` may plan as a scan of the whole table. The node is locked with its MACs read.
    FOREACH one_mac IN ARRAY string_to_array(p_macs, ',') LOOP
        SELECT x.*, (SELECT string_agg(m.mac, ',' ORDER BY m.mac) FROM node_mac m WHERE m.node_id = x.id) AS all_macs
        INTO n FROM node x WHERE x.id = (SELECT m.node_id FROM node_mac m WHERE m.mac = one_mac) FOR UPDATE OF x;
        located := FOUND;
        EXIT WHEN located;
    END LOOP;
    IF NOT located AND p_uuid IS NOT NULL THEN
        SELECT x.*, (SELECT string_agg(m.mac, ',' ORDER BY m.mac) FROM node_mac m WHERE m.node_id = x.id) AS all_macs
        INTO n FROM node x WHERE x.smbios_uuid = p_uuid FOR UPDATE OF x;
        located := FOUND;
    END IF;
    IF NOT located THEN  -- no node has the MAC or UUID (or it was deleted meanwhile)
        IF p_record AND p_macs <> '' THEN
            PERFORM bootfleet_record_unknown(split_part(p_macs, ',', 1), p_address,
                'no node has this MAC' || CASE WHEN p_trusted THEN '' ELSE '; not on a boot network' END,
                split_part(p_limits, ',', 2)::integer, split_part(p_limits, ',', 3)::integer,
                split_part(p_limits, ',', 4)::integer, true);
        END IF;
        RETURN NULL;
    END IF;

    -- Its deployment and profile (its own, else its deployment's); else the one its labels
    -- select: the most specific selector, then by name.
    SELECT d.xmin::text, d.require_secret, p.id, p.xmin::text, p.name, p.require_secret, p.installed_after
    INTO deployment_version, deployment_requires, plan_profile, profile_version, profile_name, profile_requires,
         profile_installed_after
    FROM (SELECT 1) one
    LEFT JOIN deployment d ON d.id = n.deployment_id
    LEFT JOIN profile p ON p.id = COALESCE(n.profile_id, d.profile_id);
    IF plan_profile IS NULL AND n.profile_id IS NULL THEN
        SELECT p.id, p.xmin::text, p.name, p.require_secret, p.installed_after
        INTO plan_profile, profile_version, profile_name, profile_requires, profile_installed_after
        FROM profile p WHERE p.selectors <> '{}'::jsonb AND p.selectors <@ n.labels
        ORDER BY (SELECT count(*) FROM jsonb_object_keys(p.selectors)) DESC, p.name LIMIT 1;
    END IF;

    why := CASE
        WHEN n.secret_hash IS NOT NULL THEN
            CASE WHEN n.secret_hash = p_secret_hash THEN NULL
                 WHEN p_secret_hash IS NULL THEN 'no enrolment secret (its server was created with one)'
                 ELSE 'wrong enrolment secret' END
        WHEN COALESCE(profile_requires, false) OR COALESCE(deployment_requires, false)
            THEN 'its profile or deployment requires an enrolment secret, and the node has none'
        WHEN p_secret_hash IS NOT NULL THEN 'an enrolment secret was given, but this node has none'
        WHEN NOT p_trusted THEN 'not on a boot network (BOOTFLEET_BOOT_NETWORKS)'
    END;
    -- A repeated boot once the node reached its profile's installed_after stage: the installer
    -- rebooted into the installed system without a word (docs/installers.md).
    installed := why IS NULL AND n.stage IN ('configuring', 'installing') AND COALESCE(
        array_position(forward, n.stage) >= array_position(forward, profile_installed_after), false);
    opens := why IS NULL AND plan_profile IS NOT NULL AND n.stage = ANY(opens_install) AND NOT installed;
    installs := why IS NULL AND plan_profile IS NOT NULL AND NOT n.stage = ANY(no_install);

    IF why IS NULL THEN
        UPDATE node x SET
            last_seen = now(),
            serial = CASE WHEN installs THEN COALESCE(x.serial, p_serial) ELSE x.serial END,
            smbios_uuid = CASE WHEN installs AND x.smbios_uuid IS NULL AND p_uuid IS NOT NULL
                                AND NOT EXISTS (SELECT 1 FROM node o WHERE o.smbios_uuid = p_uuid)
                               THEN p_uuid ELSE x.smbios_uuid END,
            token_version = x.token_version + CASE WHEN opens THEN 1 ELSE 0 END,
            stage = CASE WHEN opens THEN 'booting' WHEN installed THEN 'rebooting' ELSE x.stage END,
            stage_changed_at = CASE WHEN opens OR installed THEN now() ELSE x.stage_changed_at END,
            stage_times = CASE WHEN opens THEN x.stage_times || jsonb_build_object('booting', now())
                               WHEN installed THEN x.stage_times || jsonb_build_object('rebooting', now())
                               ELSE x.stage_times END,
            updated_at = CASE WHEN opens OR installed THEN now() ELSE x.updated_at END
        WHERE x.id = n.id;
        IF opens THEN
            INSERT INTO event (node_id, deployment_id, stage, kind, message, source)
            VALUES (n.id, n.deployment_id, 'booting', 'stage',
                    left('boot script served, profile ' || profile_name
                         || CASE WHEN n.stage IN ('registered', 'provisioning') THEN ''
                                 ELSE ' (install restarted; was ' || n.stage || ')' END, 2000), 'boot');
        ELSIF installed THEN
            INSERT INTO event (node_id, deployment_id, stage, kind, message, source)
            VALUES (n.id, n.deployment_id, 'rebooting', 'stage',
                    left('booted again after ' || n.stage || ' (profile ' || profile_name || ': installed_after '
                         || profile_installed_after || '): installed; boots its local disk', 2000), 'boot');
        END IF;
    ELSE
        IF NOT EXISTS (SELECT 1 FROM event e WHERE e.node_id = n.id AND e.kind = 'boot-refused'
                       AND e.created_at > now() - make_interval(secs => split_part(p_limits, ',', 1)::integer)) THEN
            INSERT INTO event (node_id, deployment_id, stage, kind, message, source)
            VALUES (n.id, n.deployment_id, n.stage, 'boot-refused',
                    left('boot refused from ' || COALESCE(p_address, 'unknown address') || ': ' || why, 2000),
                    'boot');
        END IF;
        IF p_record AND p_macs <> '' THEN  -- as an unknown MAC would be: the same work (docs/security.md)
            PERFORM bootfleet_record_unknown(split_part(p_macs, ',', 1), p_address, why,
                split_part(p_limits, ',', 2)::integer, split_part(p_limits, ',', 3)::integer,
                split_part(p_limits, ',', 4)::integer, false);
        END IF;
    END IF;

    RETURN json_build_object(
        'id', n.id, 'stage', n.stage, 'deployment_id', n.deployment_id, 'hostname', n.hostname,
        'smbios_uuid', n.smbios_uuid, 'serial', n.serial, 'instance_id', n.instance_id, 'ip', n.ip,
        'labels', n.labels, 'macs', n.all_macs, 'profile_id', plan_profile, 'profile_version', profile_version,
        'deployment_version', deployment_version, 'why', why, 'opens', opens, 'installed', installed,
        'token_version', n.token_version + CASE WHEN opens THEN 1 ELSE 0 END,
        'in_stage_s', extract(epoch FROM now() - n.stage_changed_at)::float8,
        'profile_row', CASE WHEN p_rows AND why IS NULL THEN (SELECT to_jsonb(p) FROM profile p WHERE p.id = plan_profile) END,
        'deployment_row', CASE WHEN p_rows AND why IS NULL THEN
            (SELECT to_jsonb(d) FROM deployment d WHERE d.id = n.deployment_id) END);
END
$$;
