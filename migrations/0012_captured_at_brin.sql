-- framemeta 0012: a BRIN index on captured_at.
--
-- The community edition's real-time aggregates read the raw frames after
-- the 1-minute aggregate's watermark, for every camera: `captured_at >=`
-- the watermark and nothing else. The raw hypertable has no index on time
-- alone (0002: every query of the Query API names a camera or reads a
-- partial index), so the server read the whole primary-key index of the
-- newest chunk: 12.3 ms for the 1-minute rows of the last ten minutes of
-- 12 cameras with 388,000 frames in that chunk, growing with the chunk.
-- With this index: 0.45 ms. `cameras()` reads those rows on every call
-- (0011), and so does every `stats` of every camera over the newest
-- minutes.
--
-- BRIN keeps one summary per range of pages: frames arrive in time order,
-- so the ranges are narrow, the index is a few pages, and an insert costs
-- next to nothing. Built on both editions (the Apache edition's rollups do
-- not need it; its cost is the same there).
CREATE INDEX IF NOT EXISTS frame_metadata_captured_at_brin
    ON frame_metadata USING brin (captured_at);
