-- framemeta 0015 (community edition): frames that arrive late reach the
-- rollups within ten minutes, however late they are.
--
-- The refresh policies (0003) re-read the last 6 hours (1m), 3 days (1h)
-- and 10 days (1d): a frame written for a time before that (a writer's
-- spool replayed after an outage, a camera that reconnects with buffered
-- frames, a backfill) stayed out of the rollups, of `stats` from them, of
-- `cameras()` and of `latest_all()` and searches across cameras (which list
-- cameras from the daily rollup) until someone ran `framemeta maintain`.
-- A job now does what `maintain` does for the rollups, every ten minutes:
-- it refreshes each rollup over everything the level below still keeps,
-- oldest level first. A refresh recomputes only the buckets whose
-- invalidations TimescaleDB logged (and those not materialised yet), so a
-- run with no late frame costs little. Then it recounts the cameras, so
-- what it materialised counts at once. The windows follow what each level
-- below keeps (its oldest chunk), never past it: a refresh over dropped
-- data would empty the rollup there.
--
-- A refresh that meets the policy's refresh of the same aggregate fails
-- ("concurrent refresh"); the job runs again ten minutes later. The Apache
-- edition has no job: its rollups take late frames in the insert's
-- transaction.
-- No SET clause (search_path): a procedure with one runs atomically, and a
-- refresh cannot run there. The path is set for each transaction instead.
CREATE PROCEDURE framemeta_refresh_late_job(job_id integer, config jsonb)
    LANGUAGE plpgsql
AS $$
DECLARE
    -- Each rollup, the bucket width it refreshes in and how far short of
    -- now it stops (one bucket, as its policy). An integer loop: a loop
    -- over a query keeps a portal open, and TimescaleDB then refuses the
    -- refresh ("cannot be executed from a function").
    relations text[] := ARRAY['frame_stats_1m', 'frame_stats_1h', 'frame_stats_1d'];
    widths interval[] := ARRAY[INTERVAL '1 minute', INTERVAL '1 hour', INTERVAL '1 day'];
    kept timestamptz;
    upto timestamptz;
BEGIN
    FOR position IN 1..3 LOOP
        PERFORM set_config('search_path', 'public, pg_temp', true);
        -- Where the data the level is computed from begins: the oldest chunk
        -- of the level below or of any finer one (a rollup not materialised
        -- yet is computed from the level below it). Read again for each
        -- level: the refresh of the one below adds chunks.
        SELECT min((SELECT min(c.range_start) FROM timescaledb_information.chunks AS c
                     WHERE c.hypertable_schema = coalesce(a.materialization_hypertable_schema,
                                                          current_schema())
                       AND c.hypertable_name = coalesce(a.materialization_hypertable_name,
                                                        l.relation)))
          INTO kept
          FROM (VALUES (0, 'frame_metadata'), (1, 'frame_stats_1m'),
                       (2, 'frame_stats_1h'), (3, 'frame_stats_1d')) AS l (level, relation)
          LEFT JOIN timescaledb_information.continuous_aggregates AS a
            ON a.view_schema = current_schema() AND a.view_name = l.relation
         WHERE l.level < position;
        upto := time_bucket(widths[position], now() - widths[position]);
        CONTINUE WHEN kept IS NULL;
        -- The first whole bucket.
        IF time_bucket(widths[position], kept) < kept THEN
            kept := time_bucket(widths[position], kept) + widths[position];
        END IF;
        CONTINUE WHEN kept >= upto;
        CALL refresh_continuous_aggregate(relations[position]::regclass, kept, upto);
        COMMIT;
    END LOOP;
    PERFORM set_config('search_path', 'public, pg_temp', true);
    PERFORM framemeta_recount_cameras();
END
$$;
ALTER PROCEDURE framemeta_refresh_late_job(integer, jsonb) OWNER TO framemeta_owner;
REVOKE ALL ON PROCEDURE framemeta_refresh_late_job(integer, jsonb) FROM PUBLIC;

DO $late$
BEGIN
    IF framemeta_edition() = 'timescale' THEN
        -- A job runs as the role that added it: the owner, like the policies.
        SET LOCAL ROLE framemeta_owner;
        PERFORM add_job('framemeta_refresh_late_job', INTERVAL '10 minutes');
        RESET ROLE;
    END IF;
END
$late$;
