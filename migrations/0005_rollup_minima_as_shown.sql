-- framemeta 0005: the Apache edition's rollup tables keep the minima and
-- maxima of motion_score and brightness as double precision, holding the
-- value as it reads: the real 0.8 is stored as 0.8, not 0.800000011920929.
--
-- Readers want these values as they read in the raw table, so each read
-- converted them through text (real -> text -> double precision). Over a
-- week of hourly stats of 12 cameras (2,016 rows) that conversion was about
-- 40 % of the server's work (README, "What the figures led to"); it is now
-- done once, when a row is written. Minima and maxima compose the same in
-- double precision, so every level still equals its recomputation from raw.
--
-- The community edition's continuous aggregates keep real: a continuous
-- aggregate cannot change its query without being dropped, which would drop
-- rollups older than raw retention. The Query API converts what it reads
-- from a level that stores real, as before, so both editions answer alike.
--
-- The ALTERs rewrite the three tables under an exclusive lock: inserts of
-- frames (whose trigger updates the rollups) wait until the migration
-- commits.

DO $floats$
BEGIN
    IF framemeta_edition() = 'timescale' THEN
        RETURN;  -- continuous aggregates: unchanged (see above)
    END IF;
    -- No insert may start until this migration commits: a trigger that
    -- started before the functions below are replaced would run its old
    -- body against the new columns once the ALTERs release them, and store
    -- 0.800000011920929. Inserts already running finish first (the same
    -- lock order as theirs: frame_metadata, then the rollups).
    LOCK TABLE frame_metadata IN SHARE ROW EXCLUSIVE MODE;
    -- real -> text gives the shortest exact digits when this is above 0
    -- (the default, 1); a server or role configured otherwise would round.
    PERFORM set_config('extra_float_digits', '1', true);
    ALTER TABLE frame_stats_1m
        ALTER COLUMN motion_min TYPE double precision USING motion_min::text::float8,
        ALTER COLUMN motion_max TYPE double precision USING motion_max::text::float8,
        ALTER COLUMN brightness_min TYPE double precision USING brightness_min::text::float8,
        ALTER COLUMN brightness_max TYPE double precision USING brightness_max::text::float8;
    ALTER TABLE frame_stats_1h
        ALTER COLUMN motion_min TYPE double precision USING motion_min::text::float8,
        ALTER COLUMN motion_max TYPE double precision USING motion_max::text::float8,
        ALTER COLUMN brightness_min TYPE double precision USING brightness_min::text::float8,
        ALTER COLUMN brightness_max TYPE double precision USING brightness_max::text::float8;
    ALTER TABLE frame_stats_1d
        ALTER COLUMN motion_min TYPE double precision USING motion_min::text::float8,
        ALTER COLUMN motion_max TYPE double precision USING motion_max::text::float8,
        ALTER COLUMN brightness_min TYPE double precision USING brightness_min::text::float8,
        ALTER COLUMN brightness_max TYPE double precision USING brightness_max::text::float8;
END
$floats$;

-- The trigger of 0003 and the rebuild of 0004, with the 1-minute minima and
-- maxima of raw frames converted as the columns above were; a real assigned
-- to double precision would keep its binary value (0.800000011920929).
-- The coarser levels take minima and maxima of those, unchanged. Both pin
-- extra_float_digits, as above, whatever the session that runs them set.

-- The deltas of one INSERT or COPY statement, upserted into all three
-- levels in one statement: the 1-minute totals are grouped from the new
-- rows, the hourly ones from those, the daily ones from the hourly ones
-- (counts, sums, minima and maxima compose exactly); label counts are
-- regrouped from per-minute label rows. Rows are upserted in
-- key order, one lock order for every writer.
-- SECURITY DEFINER: the writer role may insert raw rows only.
CREATE OR REPLACE FUNCTION framemeta_rollup_inserted() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    SET extra_float_digits = 1
AS $$
DECLARE
    threshold real := (SELECT value::real FROM framemeta_config WHERE key = 'motion_threshold');
BEGIN
    WITH per_label AS MATERIALIZED (
        -- Label counts per minute from the few frames with detections;
        -- every level's counts are regrouped from these, not merged.
        SELECT camera_id, time_bucket(INTERVAL '1 minute', captured_at) AS bucket,
               label, count(*) AS n
        FROM framemeta_new_rows, unnest(detection_labels) AS label
        WHERE detection_count > 0
        GROUP BY 1, 2, 3
    ), totals_1m AS MATERIALIZED (
        SELECT camera_id,
               time_bucket(INTERVAL '1 minute', captured_at) AS bucket,
               count(*) AS frames,
               min(captured_at) AS first_captured_at,
               max(captured_at) AS last_captured_at,
               min(frame_number) AS first_frame_number,
               max(frame_number) AS last_frame_number,
               count(motion_score) AS motion_frames,
               coalesce(sum(motion_score::double precision), 0) AS motion_sum,
               min(motion_score)::text::float8 AS motion_min,
               max(motion_score)::text::float8 AS motion_max,
               count(*) FILTER (WHERE motion_score >= threshold) AS motion_events,
               count(brightness) AS brightness_frames,
               coalesce(sum(brightness::double precision), 0) AS brightness_sum,
               min(brightness)::text::float8 AS brightness_min,
               max(brightness)::text::float8 AS brightness_max,
               coalesce(sum(detection_count), 0)::bigint AS detections
        FROM framemeta_new_rows
        GROUP BY 1, 2
    ), totals_1h AS MATERIALIZED (
        SELECT camera_id, time_bucket(INTERVAL '1 hour', bucket) AS bucket,
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
               sum(detections)::bigint AS detections
        FROM totals_1m
        GROUP BY 1, 2
    ), totals_1d AS (
        SELECT camera_id, time_bucket(INTERVAL '1 day', bucket) AS bucket,
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
               sum(detections)::bigint AS detections
        FROM totals_1h
        GROUP BY 1, 2
    ), delta_1m AS (
        SELECT t.*, coalesce(l.detections_by_label, '{}') AS detections_by_label
        FROM totals_1m AS t LEFT JOIN (
            SELECT camera_id, bucket, jsonb_object_agg(label, n) AS detections_by_label
            FROM per_label GROUP BY 1, 2
        ) AS l USING (camera_id, bucket)
    ), delta_1h AS (
        SELECT t.*, coalesce(l.detections_by_label, '{}') AS detections_by_label
        FROM totals_1h AS t LEFT JOIN (
            SELECT camera_id, bucket, jsonb_object_agg(label, n) AS detections_by_label
            FROM (
                SELECT camera_id, time_bucket(INTERVAL '1 hour', bucket) AS bucket, label,
                       sum(n)::bigint AS n
                FROM per_label GROUP BY 1, 2, 3
            ) AS regrouped
            GROUP BY 1, 2
        ) AS l USING (camera_id, bucket)
    ), delta_1d AS (
        SELECT t.*, coalesce(l.detections_by_label, '{}') AS detections_by_label
        FROM totals_1d AS t LEFT JOIN (
            SELECT camera_id, bucket, jsonb_object_agg(label, n) AS detections_by_label
            FROM (
                SELECT camera_id, time_bucket(INTERVAL '1 day', bucket) AS bucket, label,
                       sum(n)::bigint AS n
                FROM per_label GROUP BY 1, 2, 3
            ) AS regrouped
            GROUP BY 1, 2
        ) AS l USING (camera_id, bucket)
    ), upsert_1m AS (
        INSERT INTO frame_stats_1m AS t
        SELECT * FROM delta_1m ORDER BY camera_id, bucket
        ON CONFLICT (camera_id, bucket) DO UPDATE SET
            frames = t.frames + excluded.frames,
            first_captured_at = least(t.first_captured_at, excluded.first_captured_at),
            last_captured_at = greatest(t.last_captured_at, excluded.last_captured_at),
            first_frame_number = least(t.first_frame_number, excluded.first_frame_number),
            last_frame_number = greatest(t.last_frame_number, excluded.last_frame_number),
            motion_frames = t.motion_frames + excluded.motion_frames,
            motion_sum = t.motion_sum + excluded.motion_sum,
            motion_min = least(t.motion_min, excluded.motion_min),
            motion_max = greatest(t.motion_max, excluded.motion_max),
            motion_events = t.motion_events + excluded.motion_events,
            brightness_frames = t.brightness_frames + excluded.brightness_frames,
            brightness_sum = t.brightness_sum + excluded.brightness_sum,
            brightness_min = least(t.brightness_min, excluded.brightness_min),
            brightness_max = greatest(t.brightness_max, excluded.brightness_max),
            detections = t.detections + excluded.detections,
            detections_by_label = framemeta_add_counts(t.detections_by_label,
                                                       excluded.detections_by_label)
    ), upsert_1h AS (
        INSERT INTO frame_stats_1h AS t
        SELECT * FROM delta_1h ORDER BY camera_id, bucket
        ON CONFLICT (camera_id, bucket) DO UPDATE SET
            frames = t.frames + excluded.frames,
            first_captured_at = least(t.first_captured_at, excluded.first_captured_at),
            last_captured_at = greatest(t.last_captured_at, excluded.last_captured_at),
            first_frame_number = least(t.first_frame_number, excluded.first_frame_number),
            last_frame_number = greatest(t.last_frame_number, excluded.last_frame_number),
            motion_frames = t.motion_frames + excluded.motion_frames,
            motion_sum = t.motion_sum + excluded.motion_sum,
            motion_min = least(t.motion_min, excluded.motion_min),
            motion_max = greatest(t.motion_max, excluded.motion_max),
            motion_events = t.motion_events + excluded.motion_events,
            brightness_frames = t.brightness_frames + excluded.brightness_frames,
            brightness_sum = t.brightness_sum + excluded.brightness_sum,
            brightness_min = least(t.brightness_min, excluded.brightness_min),
            brightness_max = greatest(t.brightness_max, excluded.brightness_max),
            detections = t.detections + excluded.detections,
            detections_by_label = framemeta_add_counts(t.detections_by_label,
                                                       excluded.detections_by_label)
    )
    INSERT INTO frame_stats_1d AS t
        SELECT * FROM delta_1d ORDER BY camera_id, bucket
        ON CONFLICT (camera_id, bucket) DO UPDATE SET
            frames = t.frames + excluded.frames,
            first_captured_at = least(t.first_captured_at, excluded.first_captured_at),
            last_captured_at = greatest(t.last_captured_at, excluded.last_captured_at),
            first_frame_number = least(t.first_frame_number, excluded.first_frame_number),
            last_frame_number = greatest(t.last_frame_number, excluded.last_frame_number),
            motion_frames = t.motion_frames + excluded.motion_frames,
            motion_sum = t.motion_sum + excluded.motion_sum,
            motion_min = least(t.motion_min, excluded.motion_min),
            motion_max = greatest(t.motion_max, excluded.motion_max),
            motion_events = t.motion_events + excluded.motion_events,
            brightness_frames = t.brightness_frames + excluded.brightness_frames,
            brightness_sum = t.brightness_sum + excluded.brightness_sum,
            brightness_min = least(t.brightness_min, excluded.brightness_min),
            brightness_max = greatest(t.brightness_max, excluded.brightness_max),
            detections = t.detections + excluded.detections,
            detections_by_label = framemeta_add_counts(t.detections_by_label,
                                                       excluded.detections_by_label);
    RETURN NULL;
END
$$;


-- Apache edition: recompute the rows of one rollup level whose buckets lie
-- in [range_start, range_end) (both aligned to the level's bucket by the
-- caller) from the level below, for one camera or (NULL) all. Buckets with
-- nothing left below them are deleted. Returns the rows written. Runs in the
-- caller's transaction; owner only.
CREATE OR REPLACE FUNCTION framemeta_rebuild_rollup(
    level text, range_start timestamptz, range_end timestamptz, camera text DEFAULT NULL
) RETURNS bigint
    LANGUAGE plpgsql SET search_path = public, pg_temp
    SET extra_float_digits = 1
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
               min(motion_score)::text::float8 AS motion_min,
               max(motion_score)::text::float8 AS motion_max,
               count(*) FILTER (WHERE motion_score >= %s) AS motion_events,
               count(brightness) AS brightness_frames,
               coalesce(sum(brightness::double precision), 0) AS brightness_sum,
               min(brightness)::text::float8 AS brightness_min,
               max(brightness)::text::float8 AS brightness_max,
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
