-- framemeta 0006: the Apache edition's daily rollup gets an index on its
-- bucket alone.
--
-- Where a level's oldest chunk begins after its retention horizon (a young
-- database, or chunks dropped by hand or by a shorter retention than the
-- one configured now), the Query API asks the daily rollup, at most every
-- 30 seconds, for the newest frame it counts in the days before that chunk:
-- a frame the level lost (README, "Reading frames and statistics"). The
-- primary key (camera_id, bucket) cannot find the newest day before a
-- moment across every camera; without this index that question read every
-- row of the rollup's chunks, one per camera and day.
--
-- The community edition's continuous aggregate keeps its rows in a
-- materialization hypertable that TimescaleDB indexes by bucket already.

DO $by_bucket$
BEGIN
    IF framemeta_edition() = 'timescale' THEN
        RETURN;
    END IF;
    CREATE INDEX frame_stats_1d_bucket_idx ON frame_stats_1d (bucket);
END
$by_bucket$;
