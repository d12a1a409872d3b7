-- framemeta 0013 (community edition): the cameras' rows are recounted
-- every five minutes up to the 1-minute aggregate's watermark, from the
-- materialization hypertables; `cameras()` reads the 1-minute aggregate
-- after the cut instead of the hourly one.
--
-- 0011 cut at the hourly aggregate's watermark, an hour or more back, so
-- every `cameras()` call re-aggregated the 1-minute rows of every camera
-- since then: 1,000 cameras with a frame every 10 seconds, 103,000 rows,
-- 42 ms at p50. The cut now follows the 1-minute watermark, which its
-- policy moves every minute, and the job runs every five minutes: the
-- call reads at most the minutes since the last recount, plus the raw
-- frames after the watermark (which any real-time aggregate computes).
--
-- The recount read the aggregates' views with a bound that is not a
-- constant. TimescaleDB cannot then drop the views' real-time parts, and
-- computed them through every level before discarding them: 4 seconds
-- for 1,000 cameras and a year. It reads each level's materialization
-- hypertable instead, below that level's watermark, as `stats` does: the
-- daily rows up to the daily watermark, the hourly ones from there to the
-- hourly watermark, the 1-minute ones from there to the cut.
--
-- Frames that arrive after their minute was materialised (more than a
-- minute or two late) now count at the next recount, at most five minutes
-- later, instead of at the next hourly one. The Apache edition is
-- unchanged: its trigger counts every insert, and its cut is 'infinity'.
CREATE OR REPLACE FUNCTION framemeta_recount_cameras(camera text DEFAULT NULL) RETURNS integer
    LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
DECLARE
    cut timestamptz;
    counted timestamptz := '-infinity';  -- counted up to here, from coarser levels
    upto timestamptz;
    level record;
    written integer;
BEGIN
    LOCK TABLE frame_cameras IN EXCLUSIVE MODE;
    DELETE FROM frame_cameras WHERE camera IS NULL OR camera_id = camera;
    IF framemeta_edition() <> 'timescale' THEN
        INSERT INTO frame_cameras (camera_id, first_captured_at, last_captured_at, frames)
        SELECT camera_id, min(first_captured_at), max(last_captured_at), sum(frames)::bigint
          FROM frame_stats_1d
         WHERE camera IS NULL OR camera_id = camera
         GROUP BY camera_id
        HAVING sum(frames) > 0
         ORDER BY camera_id;
        SELECT count(*) INTO written FROM frame_cameras WHERE camera IS NULL OR camera_id = camera;
        RETURN written;
    END IF;
    IF camera IS NULL THEN
        -- The newest watermark, the 1-minute one unless a coarser level was
        -- refreshed further (a watermark ends the last bucket that had
        -- frames: a day's bucket ends after its last minute's).
        SELECT max(_timescaledb_functions.to_timestamp(
                   _timescaledb_functions.cagg_watermark(mat_hypertable_id)))
          INTO cut
          FROM _timescaledb_catalog.continuous_agg
         WHERE user_view_schema = current_schema()
           AND user_view_name IN ('frame_stats_1d', 'frame_stats_1h', 'frame_stats_1m');
        IF cut IS NULL OR cut < '1970-01-02' THEN
            cut := '-infinity';  -- never refreshed
        END IF;
        -- ISO 8601 whatever the session's DateStyle (JSON's format).
        UPDATE framemeta_config SET value = to_json(cut) #>> '{}', updated_at = now()
         WHERE key = 'cameras_counted_before';
    ELSE
        -- One camera: counted to the cut the others were counted to.
        cut := (SELECT value::timestamptz FROM framemeta_config
                 WHERE key = 'cameras_counted_before');
    END IF;
    IF cut = '-infinity' THEN
        RETURN 0;
    END IF;
    FOR level IN
        SELECT a.view_name, a.materialization_hypertable_schema AS storage_schema,
               a.materialization_hypertable_name AS storage_table,
               _timescaledb_functions.to_timestamp(
                   _timescaledb_functions.cagg_watermark(c.mat_hypertable_id)) AS watermark
          FROM timescaledb_information.continuous_aggregates AS a
          JOIN _timescaledb_catalog.continuous_agg AS c
            ON c.user_view_schema = a.view_schema AND c.user_view_name = a.view_name
         WHERE a.view_schema = current_schema()
           AND a.view_name IN ('frame_stats_1d', 'frame_stats_1h', 'frame_stats_1m')
         ORDER BY CASE a.view_name WHEN 'frame_stats_1d' THEN 1
                                   WHEN 'frame_stats_1h' THEN 2 ELSE 3 END
    LOOP
        -- Whole buckets of each level, none after the cut (the statement
        -- reads the 1-minute level from there): the daily rows up to the
        -- daily watermark, the hourly ones to the hourly watermark, the
        -- 1-minute ones to the cut. Watermarks only move on, so the last
        -- recount's cut (one camera) is below this one's watermarks.
        upto := CASE level.view_name
                    WHEN 'frame_stats_1d' THEN least(level.watermark, time_bucket(INTERVAL '1 day', cut))
                    WHEN 'frame_stats_1h' THEN least(greatest(level.watermark, counted),
                                                     time_bucket(INTERVAL '1 hour', cut))
                    ELSE cut END;
        CONTINUE WHEN upto IS NULL OR upto <= counted OR upto < '1970-01-02';
        -- Without a lower bound from '-infinity': TimescaleDB cannot
        -- compare a bucket with it ("timestamp out of range").
        EXECUTE format(
            $sql$
            INSERT INTO frame_cameras AS f (camera_id, first_captured_at, last_captured_at, frames)
            SELECT camera_id, min(first_captured_at), max(last_captured_at), sum(frames)::bigint
              FROM %I.%I
             WHERE bucket < $2 %s AND ($3::text IS NULL OR camera_id = $3)
             GROUP BY camera_id
            HAVING sum(frames) > 0
             ORDER BY camera_id
            ON CONFLICT (camera_id) DO UPDATE
               SET first_captured_at = least(f.first_captured_at, excluded.first_captured_at),
                   last_captured_at = greatest(f.last_captured_at, excluded.last_captured_at),
                   frames = f.frames + excluded.frames
            $sql$,
            level.storage_schema, level.storage_table,
            CASE WHEN counted = '-infinity' THEN '' ELSE 'AND bucket >= $1' END)
        USING counted, upto, camera;
        counted := upto;
    END LOOP;
    SELECT count(*) INTO written FROM frame_cameras WHERE camera IS NULL OR camera_id = camera;
    RETURN written;
END
$$;

DO $every_five_minutes$
BEGIN
    IF framemeta_edition() = 'timescale' THEN
        -- alter_job is for the job's owner, as add_job ran in 0011.
        SET LOCAL ROLE framemeta_owner;
        PERFORM alter_job(job_id, schedule_interval => INTERVAL '5 minutes')
           FROM timescaledb_information.jobs
          WHERE proc_name = 'framemeta_recount_cameras_job'
            AND proc_schema = current_schema();
        RESET ROLE;
        PERFORM framemeta_recount_cameras();
    END IF;
END
$every_five_minutes$;
