-- framemeta 0004: the lifecycle of the data, in the database.
--
-- * framemeta_apply_retention(): drop_chunks at every level by the horizons
--   stored in framemeta_config, under a transaction-level advisory lock,
--   logged in framemeta_maintenance_runs. `framemeta maintain`, a writer's
--   opt-in maintenance thread and pg_cron all call this one function.
-- * framemeta_rebuild_rollup(level, start, end, camera): Apache edition,
--   recompute one rollup level over a range from the level below (erase and
--   `maintain --rebuild-rollups`). The community edition refreshes its
--   continuous aggregates instead, which cannot run inside a function.
-- * Community edition: retention policies that follow framemeta_config
--   (framemeta_sync_retention_policies()), and compression of raw chunks
--   older than a day, segmented by camera and ordered by time.

-- The horizon of one level ('raw', '1m', '1h', '1d'); NULL keeps it for ever.
CREATE FUNCTION framemeta_retention(level text) RETURNS interval
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, public
    RETURN (
        SELECT CASE WHEN value = 'never' THEN NULL ELSE value::interval END
        FROM public.framemeta_config WHERE key = 'retention_' || level
    );
ALTER FUNCTION framemeta_retention(text) OWNER TO framemeta_owner;

-- One row per retention run, kept 30 days: `framemeta status` shows the last
-- one (on the Apache edition nothing else schedules retention).
CREATE TABLE framemeta_maintenance_runs (
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at  timestamptz NOT NULL,
    runner      text        NOT NULL,  -- the session's application_name
    dropped     jsonb       NOT NULL   -- [{"level", "horizon_seconds", "chunks"}]
);
CREATE INDEX framemeta_maintenance_runs_finished_idx ON framemeta_maintenance_runs (finished_at);
ALTER TABLE framemeta_maintenance_runs OWNER TO framemeta_owner;
GRANT SELECT ON framemeta_maintenance_runs TO framemeta_reader;

-- ran is false when another session holds the maintenance lock: then
-- nothing is done (the other one is doing it).
-- SECURITY DEFINER and granted to the writer role: a writer's maintenance
-- thread may apply the stored horizons, and nothing else.
CREATE FUNCTION framemeta_apply_retention(OUT ran boolean, OUT dropped jsonb)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    started timestamptz := clock_timestamp();
    level record;
    chunks text[];
BEGIN
    dropped := '[]';
    ran := pg_try_advisory_xact_lock(469880055412);  -- 'maint'
    IF NOT ran THEN
        RETURN;
    END IF;
    FOR level IN
        SELECT name, relation, framemeta_retention(name) AS horizon
        FROM (VALUES (1, 'raw', 'frame_metadata'), (2, '1m', 'frame_stats_1m'),
                     (3, '1h', 'frame_stats_1h'), (4, '1d', 'frame_stats_1d'))
             AS levels (position, name, relation)
        ORDER BY position
    LOOP
        CONTINUE WHEN level.horizon IS NULL;
        SELECT coalesce(array_agg(chunk::text ORDER BY chunk::text), '{}') INTO chunks
        FROM drop_chunks(level.relation::regclass, older_than => now() - level.horizon) AS chunk;
        dropped := dropped || jsonb_build_object(
            'level', level.name,
            'horizon_seconds', extract(epoch FROM level.horizon)::bigint,
            'chunks', to_jsonb(chunks));
    END LOOP;
    INSERT INTO framemeta_maintenance_runs (started_at, runner, dropped)
    VALUES (started, coalesce(nullif(current_setting('application_name'), ''), session_user), dropped);
    DELETE FROM framemeta_maintenance_runs WHERE finished_at < now() - INTERVAL '30 days';
END
$$;
ALTER FUNCTION framemeta_apply_retention() OWNER TO framemeta_owner;
REVOKE ALL ON FUNCTION framemeta_apply_retention() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION framemeta_apply_retention() TO framemeta_owner, framemeta_writer;

-- Apache edition: recompute the rows of one rollup level whose buckets lie
-- in [range_start, range_end) (both aligned to the level's bucket by the
-- caller) from the level below, for one camera or (NULL) all. Buckets with
-- nothing left below them are deleted. Returns the rows written. Runs in the
-- caller's transaction; owner only.
CREATE FUNCTION framemeta_rebuild_rollup(
    level text, range_start timestamptz, range_end timestamptz, camera text DEFAULT NULL
) RETURNS bigint
    LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
DECLARE
    threshold real := (SELECT value::real FROM framemeta_config WHERE key = 'motion_threshold');
    width interval;
    relation text;
    query text;
    written bigint;
BEGIN
    IF framemeta_edition() = 'timescale' THEN
        RAISE EXCEPTION 'framemeta_rebuild_rollup: on the community edition the rollups are '
            'continuous aggregates; refresh them with refresh_continuous_aggregate';
    END IF;
    width := CASE level WHEN '1m' THEN INTERVAL '1 minute' WHEN '1h' THEN INTERVAL '1 hour'
                        WHEN '1d' THEN INTERVAL '1 day' END;
    IF width IS NULL THEN
        RAISE EXCEPTION 'framemeta_rebuild_rollup: unknown level %; the levels are 1m, 1h, 1d', level;
    END IF;
    IF time_bucket(width, range_start) <> range_start OR time_bucket(width, range_end) <> range_end THEN
        RAISE EXCEPTION 'framemeta_rebuild_rollup: % .. % is not aligned to % buckets',
            range_start, range_end, level;
    END IF;
    relation := 'frame_stats_' || level;
    query := CASE level WHEN '1m' THEN format($sql$
        SELECT camera_id,
               time_bucket(INTERVAL '1 minute', captured_at) AS bucket,
               count(*) AS frames,
               min(captured_at) AS first_captured_at,
               max(captured_at) AS last_captured_at,
               min(frame_number) AS first_frame_number,
               max(frame_number) AS last_frame_number,
               count(motion_score) AS motion_frames,
               coalesce(sum(motion_score::double precision), 0) AS motion_sum,
               min(motion_score) AS motion_min,
               max(motion_score) AS motion_max,
               count(*) FILTER (WHERE motion_score >= %s) AS motion_events,
               count(brightness) AS brightness_frames,
               coalesce(sum(brightness::double precision), 0) AS brightness_sum,
               min(brightness) AS brightness_min,
               max(brightness) AS brightness_max,
               coalesce(sum(detection_count), 0)::bigint AS detections,
               framemeta_label_counts(detection_labels) AS detections_by_label
        FROM frame_metadata
        WHERE captured_at >= $1 AND captured_at < $2 AND ($3::text IS NULL OR camera_id = $3)
        GROUP BY 1, 2 $sql$, threshold)
    ELSE format($sql$
        SELECT camera_id,
               time_bucket(%L::interval, bucket) AS bucket,
               sum(frames)::bigint AS frames,
               min(first_captured_at) AS first_captured_at,
               max(last_captured_at) AS last_captured_at,
               min(first_frame_number) AS first_frame_number,
               max(last_frame_number) AS last_frame_number,
               sum(motion_frames)::bigint AS motion_frames,
               sum(motion_sum) AS motion_sum,
               min(motion_min) AS motion_min,
               max(motion_max) AS motion_max,
               sum(motion_events)::bigint AS motion_events,
               sum(brightness_frames)::bigint AS brightness_frames,
               sum(brightness_sum) AS brightness_sum,
               min(brightness_min) AS brightness_min,
               max(brightness_max) AS brightness_max,
               sum(detections)::bigint AS detections,
               framemeta_sum_counts(detections_by_label) AS detections_by_label
        FROM %I
        WHERE bucket >= $1 AND bucket < $2 AND ($3::text IS NULL OR camera_id = $3)
        GROUP BY 1, 2 $sql$, width, CASE level WHEN '1h' THEN 'frame_stats_1m' ELSE 'frame_stats_1h' END)
    END;
    EXECUTE format('DELETE FROM %I WHERE bucket >= $1 AND bucket < $2 '
                   'AND ($3::text IS NULL OR camera_id = $3)', relation)
        USING range_start, range_end, camera;
    EXECUTE format('INSERT INTO %I %s ORDER BY 1, 2', relation, query)
        USING range_start, range_end, camera;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END
$$;
ALTER FUNCTION framemeta_rebuild_rollup(text, timestamptz, timestamptz, text) OWNER TO framemeta_owner;
REVOKE ALL ON FUNCTION framemeta_rebuild_rollup(text, timestamptz, timestamptz, text) FROM PUBLIC;

-- Community edition: one retention policy per level with a horizon, as
-- stored in framemeta_config; `framemeta maintain --set-retention` calls
-- this again after changing them. Apache edition: nothing (no job scheduler).
CREATE FUNCTION framemeta_sync_retention_policies() RETURNS void
    LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
DECLARE
    level record;
BEGIN
    IF framemeta_edition() <> 'timescale' THEN
        RETURN;
    END IF;
    FOR level IN
        SELECT name, relation, framemeta_retention(name) AS horizon
        FROM (VALUES ('raw', 'frame_metadata'), ('1m', 'frame_stats_1m'),
                     ('1h', 'frame_stats_1h'), ('1d', 'frame_stats_1d'))
             AS levels (name, relation)
    LOOP
        PERFORM remove_retention_policy(level.relation::regclass, if_exists => true);
        IF level.horizon IS NOT NULL THEN
            PERFORM add_retention_policy(level.relation::regclass, drop_after => level.horizon,
                                         schedule_interval => INTERVAL '1 hour');
        END IF;
    END LOOP;
END
$$;
ALTER FUNCTION framemeta_sync_retention_policies() OWNER TO framemeta_owner;
REVOKE ALL ON FUNCTION framemeta_sync_retention_policies() FROM PUBLIC;

-- TOAST compresses values over about 2 kB (large metadata, frames with many
-- detections) on both editions; it is all the Apache edition has. lz4 is
-- several times faster than the default pglz at a similar ratio. New chunks
-- take the setting from the hypertable. Skipped where the server was built
-- without lz4.
DO $toast$
BEGIN
    IF (SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression') THEN
        ALTER TABLE frame_metadata
            ALTER COLUMN metadata SET COMPRESSION lz4,
            ALTER COLUMN detection_labels SET COMPRESSION lz4,
            ALTER COLUMN detection_scores SET COMPRESSION lz4,
            ALTER COLUMN detection_boxes SET COMPRESSION lz4;
    END IF;
END
$toast$;

-- How old a raw chunk must be before it is compressed (community edition).
INSERT INTO framemeta_config (key, value) VALUES ('compress_after', '1 day');

DO $lifecycle$
BEGIN
    IF framemeta_edition() <> 'timescale' THEN
        RETURN;  -- Apache edition: no compression and no policies
    END IF;
    -- TimescaleDB runs a policy's job as the owner of its hypertable, and
    -- refuses a role that cannot log in: without this the refresh policies
    -- of 0003 fail at every run. LOGIN needs no password; with password
    -- authentication nobody can connect as this role.
    IF NOT (SELECT rolcanlogin FROM pg_roles WHERE rolname = 'framemeta_owner') THEN
        BEGIN
            ALTER ROLE framemeta_owner LOGIN;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'TimescaleDB runs policies as the owner of the hypertable, '
                'framemeta_owner, which must have LOGIN: ask a DBA to run '
                '"ALTER ROLE framemeta_owner LOGIN" (no password needed), then migrate again';
        END;
    END IF;
    -- Segmented by camera: every query filters or groups by camera, and a
    -- camera's frames compress well together (the same sizes, slowly moving
    -- scores). Ordered like the primary key, newest first, so the natural
    -- key is checked cheaply when late frames arrive.
    ALTER TABLE frame_metadata SET (
        timescaledb.compress,
        timescaledb.compress_segmentby = 'camera_id',
        timescaledb.compress_orderby = 'captured_at DESC, frame_number DESC'
    );
    PERFORM add_compression_policy('frame_metadata', compress_after => INTERVAL '1 day',
                                   schedule_interval => INTERVAL '1 hour');
    PERFORM framemeta_sync_retention_policies();
END
$lifecycle$;
