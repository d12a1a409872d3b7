-- framemeta 0003: the 1-minute, hourly and daily rollups.
--
-- frame_stats_1m, frame_stats_1h and frame_stats_1d hold one row per
-- (camera_id, bucket) with composable aggregates only: counts, sums, minima,
-- maxima. Averages are derived when read (motion_sum / motion_frames), never
-- stored, so a coarser level is exactly the sum of the finer one. Sums are
-- double precision over real inputs. detections_by_label is a jsonb object
-- {"label": count}, added key by key when levels are combined.
--
-- The same relations and columns on both TimescaleDB editions:
-- * community ('timescale' license): hierarchical continuous aggregates
--   (1m from raw, 1h from 1m, 1d from 1h) with refresh policies, real-time
--   (materialized_only = false) so that readers also see the minutes not
--   materialised yet;
-- * Apache: hypertables kept by a statement-level trigger on frame_metadata,
--   in the same transaction as the insert, for every client (COPY included).
--   Rows skipped by ON CONFLICT DO NOTHING are not in the transition table,
--   so a replayed batch counts nothing twice.

-- {"a": 1} + {"a": 2, "b": 1} = {"a": 3, "b": 1}
CREATE FUNCTION framemeta_add_counts(a jsonb, b jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (
        SELECT coalesce(a, '{}')
               || coalesce(jsonb_object_agg(key, coalesce((a ->> key)::bigint, 0) + value::bigint), '{}')
        FROM jsonb_each(b)
    );

CREATE AGGREGATE framemeta_sum_counts(jsonb) (
    SFUNC = framemeta_add_counts,
    STYPE = jsonb,
    INITCOND = '{}',
    PARALLEL = SAFE
);

-- Counts the labels of each frame's detection_labels (continuous aggregates
-- cannot unnest).
CREATE FUNCTION framemeta_count_labels_step(state jsonb, labels text[]) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN labels IS NULL OR cardinality(labels) = 0 THEN state
        ELSE framemeta_add_counts(state, (
            SELECT jsonb_object_agg(label, n)
            FROM (SELECT label, count(*) AS n FROM unnest(labels) AS label GROUP BY label) AS per_label
        ))
    END;

CREATE AGGREGATE framemeta_label_counts(text[]) (
    SFUNC = framemeta_count_labels_step,
    STYPE = jsonb,
    INITCOND = '{}',
    PARALLEL = SAFE
);

-- The deltas of one INSERT or COPY statement, upserted into all three
-- levels in one statement: the 1-minute totals are grouped from the new
-- rows, the hourly ones from those, the daily ones from the hourly ones
-- (counts, sums, minima and maxima compose exactly); label counts are
-- regrouped from per-minute label rows. Rows are upserted in
-- key order, one lock order for every writer.
-- SECURITY DEFINER: the writer role may insert raw rows only.
CREATE FUNCTION framemeta_rollup_inserted() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
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
               min(motion_score) AS motion_min,
               max(motion_score) AS motion_max,
               count(*) FILTER (WHERE motion_score >= threshold) AS motion_events,
               count(brightness) AS brightness_frames,
               coalesce(sum(brightness::double precision), 0) AS brightness_sum,
               min(brightness) AS brightness_min,
               max(brightness) AS brightness_max,
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

ALTER FUNCTION framemeta_rollup_inserted() OWNER TO framemeta_owner;

-- Retention horizons, read by `framemeta maintain` (drop_chunks) and
-- changed by `framemeta maintain --set-retention`, so every tool agrees.
INSERT INTO framemeta_config (key, value) VALUES
    ('retention_raw', '7 days'),
    ('retention_1m', '30 days'),
    ('retention_1h', '365 days'),
    ('retention_1d', 'never');

-- The aggregates of one level computed from the level below it (or, for
-- 1m, from raw frames); the continuous aggregates are defined with these.
CREATE FUNCTION pg_temp.framemeta_level_select(source text, width interval, threshold real)
    RETURNS text LANGUAGE sql IMMUTABLE
    RETURN CASE WHEN source = 'frame_metadata' THEN format($sql$
        SELECT camera_id,
               time_bucket(%2$L::interval, captured_at) AS bucket,
               count(*) AS frames,
               min(captured_at) AS first_captured_at,
               max(captured_at) AS last_captured_at,
               min(frame_number) AS first_frame_number,
               max(frame_number) AS last_frame_number,
               count(motion_score) AS motion_frames,
               coalesce(sum(motion_score::double precision), 0) AS motion_sum,
               min(motion_score) AS motion_min,
               max(motion_score) AS motion_max,
               count(*) FILTER (WHERE motion_score >= %3$s) AS motion_events,
               count(brightness) AS brightness_frames,
               coalesce(sum(brightness::double precision), 0) AS brightness_sum,
               min(brightness) AS brightness_min,
               max(brightness) AS brightness_max,
               coalesce(sum(detection_count), 0)::bigint AS detections,
               framemeta_label_counts(detection_labels) AS detections_by_label
        FROM %1$I
        GROUP BY 1, 2 $sql$, source, width, threshold)
    ELSE format($sql$
        SELECT camera_id,
               time_bucket(%2$L::interval, bucket) AS bucket,
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
        FROM %1$I
        GROUP BY 1, 2 $sql$, source, width)
    END;

DO $rollups$
DECLARE
    threshold real := (SELECT value::real FROM framemeta_config WHERE key = 'motion_threshold');
    level record;
BEGIN
    IF framemeta_edition() <> 'timescale' THEN
        RETURN;  -- the Apache edition's tables follow below
    END IF;
    -- Refresh windows: 1m every minute over the last 6 hours (frames arriving
    -- hours late still land), 1h every 10 minutes over 3 days, 1d every hour
    -- over 10 days. Each start_offset stays inside the retention of the level
    -- below (raw 7 days, 1m 30 days, 1h 1 year), so a refresh never forgets
    -- dropped data; each window covers at least two buckets.
    FOR level IN
        SELECT * FROM (VALUES
            ('frame_stats_1m', 'frame_metadata', INTERVAL '1 minute',
             INTERVAL '6 hours', INTERVAL '1 minute', INTERVAL '1 minute'),
            ('frame_stats_1h', 'frame_stats_1m', INTERVAL '1 hour',
             INTERVAL '3 days', INTERVAL '1 hour', INTERVAL '10 minutes'),
            ('frame_stats_1d', 'frame_stats_1h', INTERVAL '1 day',
             INTERVAL '10 days', INTERVAL '1 day', INTERVAL '1 hour')
        ) AS levels (relation, source, width, start_offset, end_offset, schedule)
    LOOP
        EXECUTE format(
            'CREATE MATERIALIZED VIEW %I WITH (timescaledb.continuous, '
            'timescaledb.materialized_only = false) AS %s WITH NO DATA',
            level.relation, pg_temp.framemeta_level_select(level.source, level.width, threshold));
        PERFORM add_continuous_aggregate_policy(level.relation::regclass,
            start_offset => level.start_offset, end_offset => level.end_offset,
            schedule_interval => level.schedule);
        EXECUTE format('ALTER MATERIALIZED VIEW %I OWNER TO framemeta_owner', level.relation);
    END LOOP;
    INSERT INTO framemeta_config (key, value) VALUES ('rollups', 'continuous_aggregates');
END
$rollups$;

DO $rollups$
BEGIN
    IF framemeta_edition() = 'timescale' THEN
        RETURN;
    END IF;
    CREATE TABLE frame_stats_1m (
        camera_id           text             NOT NULL,
        bucket              timestamptz      NOT NULL,
        frames              bigint           NOT NULL,
        first_captured_at   timestamptz      NOT NULL,
        last_captured_at    timestamptz      NOT NULL,
        first_frame_number  bigint           NOT NULL,
        last_frame_number   bigint           NOT NULL,
        motion_frames       bigint           NOT NULL,  -- frames with a motion_score
        motion_sum          double precision NOT NULL,
        motion_min          real,
        motion_max          real,
        motion_events       bigint           NOT NULL,  -- at or above the motion threshold
        brightness_frames   bigint           NOT NULL,
        brightness_sum      double precision NOT NULL,
        brightness_min      real,
        brightness_max      real,
        detections          bigint           NOT NULL,
        detections_by_label jsonb            NOT NULL,
        PRIMARY KEY (camera_id, bucket)
    );
    CREATE TABLE frame_stats_1h (LIKE frame_stats_1m INCLUDING ALL);
    CREATE TABLE frame_stats_1d (LIKE frame_stats_1m INCLUDING ALL);
    -- Hypertables too: retention drops their old chunks like raw ones.
    PERFORM create_hypertable('frame_stats_1m', by_range('bucket', INTERVAL '7 days'),
                              create_default_indexes => false);
    PERFORM create_hypertable('frame_stats_1h', by_range('bucket', INTERVAL '90 days'),
                              create_default_indexes => false);
    PERFORM create_hypertable('frame_stats_1d', by_range('bucket', INTERVAL '365 days'),
                              create_default_indexes => false);
    ALTER TABLE frame_stats_1m OWNER TO framemeta_owner;
    ALTER TABLE frame_stats_1h OWNER TO framemeta_owner;
    ALTER TABLE frame_stats_1d OWNER TO framemeta_owner;
    CREATE TRIGGER framemeta_rollup_inserted
        AFTER INSERT ON frame_metadata
        REFERENCING NEW TABLE AS framemeta_new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION framemeta_rollup_inserted();
    INSERT INTO framemeta_config (key, value) VALUES ('rollups', 'trigger');
END
$rollups$;

GRANT SELECT ON frame_stats_1m, frame_stats_1h, frame_stats_1d TO framemeta_reader;
