-- framemeta 0003: the 1-minute, hourly and daily rollups.
--
-- frame_stats_1m, frame_stats_1h and frame_stats_1d hold one row per
-- (camera_id, bucket) with composable aggregates only: counts, sums, minima,
-- maxima. Averages are derived when read (motion_sum / motion_frames), never
-- stored, so a coarser level is exactly the sum of the finer one. Sums are
-- double precision over real inputs. detections_by_label is a jsonb object
-- {"label": count}, added key by key when levels are combined.
--
-- This file builds the Apache-edition form: ordinary tables kept by a
-- statement-level trigger on frame_metadata, in the same transaction as the
-- insert, for every client (COPY included). Rows skipped by
-- ON CONFLICT DO NOTHING are not in the transition table, so a replayed
-- batch counts nothing twice.

-- {"a": 1} + {"a": 2, "b": 1} = {"a": 3, "b": 1}
CREATE FUNCTION framemeta_add_counts(a jsonb, b jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN a IS NULL OR a = '{}' THEN coalesce(b, '{}')
        WHEN b IS NULL OR b = '{}' THEN a
        ELSE (
            SELECT jsonb_object_agg(key, total)
            FROM (
                SELECT key, sum(value::bigint) AS total
                FROM (SELECT * FROM jsonb_each_text(a) UNION ALL SELECT * FROM jsonb_each_text(b)) AS both_sides
                GROUP BY key
            ) AS merged
        )
    END;

CREATE AGGREGATE framemeta_sum_counts(jsonb) (
    SFUNC = framemeta_add_counts,
    STYPE = jsonb,
    INITCOND = '{}',
    PARALLEL = SAFE
);

CREATE TABLE frame_stats_1m (
    camera_id          text             NOT NULL,
    bucket             timestamptz      NOT NULL,
    frames             bigint           NOT NULL,
    first_captured_at  timestamptz      NOT NULL,
    last_captured_at   timestamptz      NOT NULL,
    first_frame_number bigint           NOT NULL,
    last_frame_number  bigint           NOT NULL,
    motion_frames      bigint           NOT NULL,  -- frames with a motion_score
    motion_sum         double precision NOT NULL,
    motion_min         real,
    motion_max         real,
    motion_events      bigint           NOT NULL,  -- frames at or above the motion threshold
    brightness_frames  bigint           NOT NULL,
    brightness_sum     double precision NOT NULL,
    brightness_min     real,
    brightness_max     real,
    detections         bigint           NOT NULL,
    detections_by_label jsonb           NOT NULL,
    PRIMARY KEY (camera_id, bucket)
);
CREATE TABLE frame_stats_1h (LIKE frame_stats_1m INCLUDING ALL);
CREATE TABLE frame_stats_1d (LIKE frame_stats_1m INCLUDING ALL);

-- Hypertables too: retention drops their old chunks like raw ones.
SELECT create_hypertable('frame_stats_1m', by_range('bucket', INTERVAL '7 days'),
                         create_default_indexes => false);
SELECT create_hypertable('frame_stats_1h', by_range('bucket', INTERVAL '90 days'),
                         create_default_indexes => false);
SELECT create_hypertable('frame_stats_1d', by_range('bucket', INTERVAL '365 days'),
                         create_default_indexes => false);

-- The deltas of one INSERT or COPY statement, upserted into all three
-- levels. Each level is grouped from the new rows directly: for counts,
-- sums, minima and maxima that equals grouping the finer level's deltas.
-- SECURITY DEFINER: the writer role may insert raw rows only.
CREATE FUNCTION framemeta_rollup_inserted() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    threshold real := (SELECT value::real FROM framemeta_config WHERE key = 'motion_threshold');
    level record;
BEGIN
    FOR level IN
        SELECT * FROM (VALUES ('frame_stats_1m', INTERVAL '1 minute'),
                              ('frame_stats_1h', INTERVAL '1 hour'),
                              ('frame_stats_1d', INTERVAL '1 day')) AS levels (relation, width)
    LOOP
        EXECUTE format($sql$
            WITH deltas AS (
                SELECT camera_id,
                       time_bucket($1, captured_at) AS bucket,
                       count(*) AS frames,
                       min(captured_at) AS first_captured_at,
                       max(captured_at) AS last_captured_at,
                       min(frame_number) AS first_frame_number,
                       max(frame_number) AS last_frame_number,
                       count(motion_score) AS motion_frames,
                       coalesce(sum(motion_score::double precision), 0) AS motion_sum,
                       min(motion_score) AS motion_min,
                       max(motion_score) AS motion_max,
                       count(*) FILTER (WHERE motion_score >= $2) AS motion_events,
                       count(brightness) AS brightness_frames,
                       coalesce(sum(brightness::double precision), 0) AS brightness_sum,
                       min(brightness) AS brightness_min,
                       max(brightness) AS brightness_max,
                       sum(detection_count) AS detections
                FROM framemeta_new_rows
                GROUP BY 1, 2
            ), labels AS (
                SELECT camera_id, bucket, jsonb_object_agg(label, n) AS detections_by_label
                FROM (
                    SELECT camera_id, time_bucket($1, captured_at) AS bucket, label, count(*) AS n
                    FROM framemeta_new_rows, unnest(detection_labels) AS label
                    WHERE detection_count > 0
                    GROUP BY 1, 2, 3
                ) AS per_label
                GROUP BY 1, 2
            )
            INSERT INTO %1$I AS t
            SELECT d.*, coalesce(l.detections_by_label, '{}')
            FROM deltas AS d LEFT JOIN labels AS l USING (camera_id, bucket)
            ORDER BY camera_id, bucket  -- one lock order for every writer
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
        $sql$, level.relation) USING level.width, threshold;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER framemeta_rollup_inserted
    AFTER INSERT ON frame_metadata
    REFERENCING NEW TABLE AS framemeta_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION framemeta_rollup_inserted();

ALTER TABLE frame_stats_1m OWNER TO framemeta_owner;
ALTER TABLE frame_stats_1h OWNER TO framemeta_owner;
ALTER TABLE frame_stats_1d OWNER TO framemeta_owner;
ALTER FUNCTION framemeta_rollup_inserted() OWNER TO framemeta_owner;
GRANT SELECT ON frame_stats_1m, frame_stats_1h, frame_stats_1d TO framemeta_reader;

INSERT INTO framemeta_config (key, value) VALUES ('rollups', 'trigger');
