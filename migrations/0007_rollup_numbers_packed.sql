-- framemeta 0007: each row of the Apache edition's rollup tables also keeps
-- its 13 numbers packed in one bytea, `packed_numbers`, computed by the
-- server whenever the row is written (a stored generated column: the
-- trigger's upserts and the rebuild's inserts need no change).
--
-- The Query API reads a level's own buckets through this column (README,
-- "How stats reads"). The server's part of sending a result is paid per
-- value: each one goes through its type's send function. A week of hourly
-- stats of 12 cameras (2,016 rows) has 18 values a row; received by libpq
-- alone, with no Python at all, it took 9.18 ms at p50, and 3.76 ms with
-- the numbers packed (6 values a row; 300 calls each, alternating).
--
-- The layout, 104 bytes: big-endian int8 and float8 values, in StatsRow's
-- field order: frames, first_frame_number, last_frame_number,
-- motion_frames, motion average, motion_min, motion_max, motion_events,
-- brightness_frames, brightness average, brightness_min, brightness_max,
-- detections. An average is the sum divided by the frames that had the
-- value; a float is NaN where the column is NULL (no frame had the value:
-- a stored score or brightness is never NaN, the raw table's CHECK
-- refuses it).
--
-- The community edition's continuous aggregates are unchanged: one cannot
-- change its query without being dropped, which would drop rollups older
-- than raw retention. The Query API reads their columns, as before.
--
-- The ALTERs rewrite the three tables under an exclusive lock: inserts of
-- frames (whose trigger updates the rollups) wait until the migration
-- commits.

DO $packed$
DECLARE
    relation text;
BEGIN
    IF framemeta_edition() = 'timescale' THEN
        RETURN;  -- continuous aggregates: unchanged (see above)
    END IF;
    -- The lock order of an insert's trigger: frame_metadata, then the
    -- rollups from the finest.
    LOCK TABLE frame_metadata IN SHARE ROW EXCLUSIVE MODE;
    FOREACH relation IN ARRAY ARRAY['frame_stats_1m', 'frame_stats_1h', 'frame_stats_1d'] LOOP
        EXECUTE format($sql$
            ALTER TABLE %I ADD COLUMN packed_numbers bytea GENERATED ALWAYS AS (
                int8send(frames) || int8send(first_frame_number)
                || int8send(last_frame_number) || int8send(motion_frames)
                || float8send(coalesce(motion_sum / nullif(motion_frames, 0), 'NaN'))
                || float8send(coalesce(motion_min, 'NaN'))
                || float8send(coalesce(motion_max, 'NaN'))
                || int8send(motion_events) || int8send(brightness_frames)
                || float8send(coalesce(brightness_sum / nullif(brightness_frames, 0), 'NaN'))
                || float8send(coalesce(brightness_min, 'NaN'))
                || float8send(coalesce(brightness_max, 'NaN'))
                || int8send(detections)
            ) STORED $sql$, relation);
        EXECUTE format('COMMENT ON COLUMN %I.packed_numbers IS %L', relation,
                       'The row''s numbers as framemeta''s Query API reads them '
                       '(migration 0007).');
    END LOOP;
END
$packed$;
