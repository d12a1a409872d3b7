-- framemeta 0014 (community edition): retention with a horizon on the
-- daily level locks frame_cameras before it drops chunks.
--
-- framemeta_apply_retention (0011) dropped the chunks past each horizon,
-- then recounted the cameras, which locks frame_cameras. Every other
-- recount (the job every five minutes since 0013, erasure, rebuild,
-- `maintain`) locks frame_cameras first and then reads the daily chunks.
-- When the two met, each waited for the other: PostgreSQL cancelled one
-- as a deadlock (a test reproduces the interleaving). Now every recount
-- on the community edition takes frame_cameras before any chunk. Nothing
-- else there locks frame_cameras; readers are not blocked by the lock.
--
-- The Apache edition keeps the order of 0011: its writers' trigger takes
-- frame_cameras after the raw and rollup chunks they insert into, the
-- order retention follows; locking frame_cameras first there would set
-- retention against a writer of late frames instead.
--
-- The function body is 0011's with that lock added (a function changes
-- only by CREATE OR REPLACE with its whole body).
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
    IF framemeta_retention('1d') IS NOT NULL AND framemeta_edition() = 'timescale' THEN
        -- The recount at the end locks frame_cameras; take it before the
        -- chunks, in the order of every other recount (see the top).
        LOCK TABLE frame_cameras IN EXCLUSIVE MODE;
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
