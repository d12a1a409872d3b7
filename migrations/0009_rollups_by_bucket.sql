-- framemeta 0009: the Apache edition's 1-minute and hourly rollups get an
-- index on their bucket alone, as the daily one has (0006).
--
-- Statistics of every camera over a range read a level's rows by bucket.
-- The primary key (camera_id, bucket) cannot find a range of buckets
-- across cameras: the server walked the whole index of each chunk it
-- touched. With a year of hourly rows in 90-day chunks, a week of hourly
-- stats of 12 cameras read 1,273 buffers for its 2,016 rows, against 100
-- with this index; the walk grows with the chunk and the number of
-- cameras, the index's read with the range asked. At 12 cameras both took
-- the same time (5.5-5.8 ms at p50 over 400 alternating reads); the sort
-- the index needs is paid on the rows returned.
--
-- The community edition's continuous aggregates keep their rows in
-- materialization hypertables that TimescaleDB indexes by bucket already.

DO $by_bucket$
BEGIN
    IF framemeta_edition() = 'timescale' THEN
        RETURN;
    END IF;
    CREATE INDEX IF NOT EXISTS frame_stats_1m_bucket_idx ON frame_stats_1m (bucket);
    CREATE INDEX IF NOT EXISTS frame_stats_1h_bucket_idx ON frame_stats_1h (bucket);
END
$by_bucket$;
