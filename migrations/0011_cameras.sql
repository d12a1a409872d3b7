-- framemeta 0011: one row per camera, so that `cameras()` reads as many
-- rows as there are cameras.
--
-- `cameras()` added up the daily rollup's rows of every camera: cameras
-- times days kept, and the daily level is kept for ever. 12 cameras and a
-- year of days took about 1 ms; 1,200 cameras and a year (438,000 rows)
-- took 50 ms here, and it grows every day. frame_cameras holds what that
-- sum gave (first and last frame seen, frames counted) for the buckets
-- before `cameras_counted_before` (framemeta_config); `cameras()` adds the
-- hourly rows from there on.
--
-- Apache edition: a statement trigger on the raw hypertable keeps the rows
-- in the writer's transaction, as it keeps the rollups, and the cut is
-- 'infinity'. One grouped upsert per INSERT or COPY statement, from the
-- rows it inserted (rows skipped by ON CONFLICT DO NOTHING are not among
-- them); on 5,000-row COPY batches such a trigger cost 0.8 % at the median
-- (37.7 against 37.4 ms). A camera's row is locked by each statement that
-- writes its frames until its transaction ends, as its rollup rows are.
--
-- Community edition: no trigger. TimescaleDB 2.28.3 copies row by row into
-- a hypertable that has a trigger with a transition table, and on that path
-- COPY logs no invalidation for its continuous aggregates: late frames
-- written by COPY would never reach the rollups. A job recounts the rows
-- every hour instead, from what the daily and hourly aggregates have
-- materialised, and moves the cut to the hourly one's watermark; the hours
-- after come from the hourly aggregate itself (1,000 cameras: about 2,000
-- rows, against 48,000 from the daily rows of the last two days).
--
-- What changes counted frames otherwise recounts too
-- (framemeta_recount_cameras): the erasure of frames, a rebuild of the
-- rollups, `maintain` (community edition), and `framemeta_apply_retention`
-- when the daily level has a horizon (none by default).
CREATE TABLE frame_cameras (
    camera_id         text        PRIMARY KEY,
    first_captured_at timestamptz NOT NULL,
    last_captured_at  timestamptz NOT NULL,
    frames            bigint      NOT NULL CHECK (frames > 0)
);
ALTER TABLE frame_cameras OWNER TO framemeta_owner;
GRANT SELECT ON frame_cameras TO framemeta_reader;

-- The Apache edition's trigger function (see the top). Upserted in key
-- order, one lock order for every writer. SECURITY DEFINER: the writer
-- role may insert raw rows only.
CREATE FUNCTION framemeta_cameras_seen() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
    INSERT INTO frame_cameras AS c (camera_id, first_captured_at, last_captured_at, frames)
    SELECT camera_id, min(captured_at), max(captured_at), count(*)
      FROM framemeta_new_rows
     GROUP BY camera_id
     ORDER BY camera_id
    ON CONFLICT (camera_id) DO UPDATE
       SET first_captured_at = least(c.first_captured_at, excluded.first_captured_at),
           last_captured_at = greatest(c.last_captured_at, excluded.last_captured_at),
           frames = c.frames + excluded.frames;
    RETURN NULL;
END
$$;
ALTER FUNCTION framemeta_cameras_seen() OWNER TO framemeta_owner;
REVOKE ALL ON FUNCTION framemeta_cameras_seen() FROM PUBLIC;

-- Recount the rows of one camera or (NULL) all. Apache edition: from the
-- whole daily rollup, which its trigger keeps in the writer's transaction.
-- Community edition: from what the aggregates have materialised, the daily
-- one's buckets and the hourly one's after them; the hourly aggregate's
-- watermark becomes the new cut (one camera: counted to the cut the others
-- were counted to). Returns the rows written. Takes an EXCLUSIVE lock on
-- frame_cameras until the caller's transaction ends: a writer's upsert
-- (Apache) waits for it, so each frame is counted once, here if it
-- committed before the lock (READ COMMITTED: the count below reads after
-- the lock), by its trigger after; on the community edition it orders
-- concurrent recounts. Owner only.
CREATE FUNCTION framemeta_recount_cameras(camera text DEFAULT NULL) RETURNS integer
    LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
DECLARE
    cut timestamptz := 'infinity';
    daily_to timestamptz := 'infinity';
    written integer;
BEGIN
    LOCK TABLE frame_cameras IN EXCLUSIVE MODE;
    DELETE FROM frame_cameras WHERE camera IS NULL OR camera_id = camera;
    IF framemeta_edition() = 'timescale' THEN
        SELECT max(w) FILTER (WHERE level = 'frame_stats_1d'),
               max(w) FILTER (WHERE level = 'frame_stats_1h')
          INTO daily_to, cut
          FROM (SELECT c.user_view_name AS level,
                       _timescaledb_functions.to_timestamp(
                           _timescaledb_functions.cagg_watermark(c.mat_hypertable_id)) AS w
                  FROM _timescaledb_catalog.continuous_agg AS c
                 WHERE c.user_view_schema = current_schema()) AS watermarks;
        IF camera IS NULL THEN
            cut := greatest(cut, daily_to);
            IF cut IS NULL OR cut < '1970-01-02' THEN
                cut := '-infinity';  -- never refreshed
            END IF;
            -- ISO 8601 whatever the session's DateStyle (JSON's format).
            UPDATE framemeta_config SET value = to_json(cut) #>> '{}', updated_at = now()
             WHERE key = 'cameras_counted_before';
        ELSE
            cut := (SELECT value::timestamptz FROM framemeta_config
                     WHERE key = 'cameras_counted_before');
        END IF;
        IF cut = '-infinity' THEN
            RETURN 0;  -- (and TimescaleDB cannot compare a bucket with it)
        END IF;
        daily_to := least(daily_to, cut);
        IF daily_to IS NULL OR daily_to < '1970-01-02' THEN
            daily_to := '-infinity';
        END IF;
    END IF;
    -- Two statements: TimescaleDB cannot compare a bucket with
    -- '-infinity' (a daily aggregate never refreshed).
    IF daily_to > '-infinity' THEN
        INSERT INTO frame_cameras (camera_id, first_captured_at, last_captured_at, frames)
        SELECT camera_id, min(first_captured_at), max(last_captured_at), sum(frames)::bigint
          FROM frame_stats_1d
         WHERE bucket < daily_to AND (camera IS NULL OR camera_id = camera)
         GROUP BY camera_id
        HAVING sum(frames) > 0
         ORDER BY camera_id;
    END IF;
    IF daily_to < cut THEN
        INSERT INTO frame_cameras AS f (camera_id, first_captured_at, last_captured_at, frames)
        SELECT camera_id, min(first_captured_at), max(last_captured_at), sum(frames)::bigint
          FROM frame_stats_1h
         WHERE bucket >= daily_to AND bucket < cut AND (camera IS NULL OR camera_id = camera)
         GROUP BY camera_id
        HAVING sum(frames) > 0
         ORDER BY camera_id
        ON CONFLICT (camera_id) DO UPDATE
           SET first_captured_at = least(f.first_captured_at, excluded.first_captured_at),
               last_captured_at = greatest(f.last_captured_at, excluded.last_captured_at),
               frames = f.frames + excluded.frames;
    END IF;
    SELECT count(*) INTO written FROM frame_cameras WHERE camera IS NULL OR camera_id = camera;
    RETURN written;
END
$$;
ALTER FUNCTION framemeta_recount_cameras(text) OWNER TO framemeta_owner;
REVOKE ALL ON FUNCTION framemeta_recount_cameras(text) FROM PUBLIC;

-- Community edition: the hourly job (see the top).
CREATE PROCEDURE framemeta_recount_cameras_job(job_id integer, config jsonb)
    LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
BEGIN
    PERFORM framemeta_recount_cameras();
END
$$;
ALTER PROCEDURE framemeta_recount_cameras_job(integer, jsonb) OWNER TO framemeta_owner;
REVOKE ALL ON PROCEDURE framemeta_recount_cameras_job(integer, jsonb) FROM PUBLIC;

-- Retention as in 0004, and a recount when the daily level has a horizon.
CREATE OR REPLACE FUNCTION framemeta_apply_retention(OUT ran boolean, OUT dropped jsonb)
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
    IF framemeta_retention('1d') IS NOT NULL THEN
        -- The daily level drops days (here, or by the community edition's
        -- policy): frame_cameras counts what it keeps.
        PERFORM framemeta_recount_cameras();
    END IF;
    INSERT INTO framemeta_maintenance_runs (started_at, runner, dropped)
    VALUES (started, coalesce(nullif(current_setting('application_name'), ''), session_user), dropped);
    DELETE FROM framemeta_maintenance_runs WHERE finished_at < now() - INTERVAL '30 days';
END
$$;

INSERT INTO framemeta_config (key, value) VALUES ('cameras_counted_before', 'infinity');

DO $cameras$
BEGIN
    IF framemeta_edition() <> 'timescale' THEN
        -- Named to fire after framemeta_rollup_inserted (triggers of one
        -- event fire in name order): a writer takes its camera row last.
        -- CREATE TRIGGER locks out writers until this migration commits;
        -- the recount below then sees every frame committed before.
        CREATE TRIGGER framemeta_seen_inserted
            AFTER INSERT ON frame_metadata
            REFERENCING NEW TABLE AS framemeta_new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION framemeta_cameras_seen();
    ELSE
        -- A job runs as the role that added it: the owner, like the policies.
        SET LOCAL ROLE framemeta_owner;
        PERFORM add_job('framemeta_recount_cameras_job', INTERVAL '1 hour');
        RESET ROLE;
    END IF;
    PERFORM framemeta_recount_cameras();
END
$cameras$;
