-- framemeta 0002: the raw frame table, a hypertable with 1-day chunks.
--
-- Columns are ordered widest-aligned first so rows carry no padding.
-- Detections are three parallel arrays rather than a jsonb list: typed arrays
-- stay queryable ('person' = ANY(detection_labels), unnest(labels, scores))
-- and compress far better than jsonb in TimescaleDB's columnstore; element i
-- of each array describes detection i. Boxes are an n x 4 real[] array of
-- (x, y, width, height) in pixels, a row of NULLs where a detector gave no box.

CREATE TABLE frame_metadata (
    captured_at      timestamptz NOT NULL,
    frame_number     bigint      NOT NULL CHECK (frame_number >= 0),
    width            integer     CHECK (width > 0),
    height           integer     CHECK (height > 0),
    motion_score     real        CHECK (motion_score BETWEEN 0 AND 1),
    brightness       real        CHECK (brightness BETWEEN 0 AND 1),
    detection_count  integer     NOT NULL DEFAULT 0 CHECK (detection_count >= 0),
    camera_id        text        NOT NULL CHECK (char_length(camera_id) BETWEEN 1 AND 64),
    detection_labels text[],
    detection_scores real[],
    detection_boxes  real[],
    metadata         jsonb,
    -- The natural key: a retried or replayed batch never creates duplicates.
    -- It also serves "latest frame" and "range of one camera" (camera_id,
    -- then captured_at), so no separate camera+time index is created.
    CONSTRAINT frame_metadata_pkey PRIMARY KEY (camera_id, captured_at, frame_number)
);

-- No default captured_at index: every query framemeta makes filters by camera
-- (primary key), by motion (partial index below) or by metadata (GIN), and
-- chunk exclusion narrows time; a fifth index would only cost ingest.
SELECT create_hypertable(
    'frame_metadata',
    by_range('captured_at', INTERVAL '1 day'),
    create_default_indexes => false
);

-- Containment search (metadata @> '{"zone": "gate"}'): jsonb_path_ops is
-- smaller and faster than the default operator class for @>, which is the
-- only operator framemeta's search uses.
CREATE INDEX frame_metadata_metadata_idx
    ON frame_metadata USING gin (metadata jsonb_path_ops);

-- Motion events: frames at or above the motion threshold (0.5, also in
-- framemeta_config) are a small share of all frames, so a partial index finds
-- them by time, for one camera or all, without scanning the rest.
CREATE INDEX frame_metadata_motion_idx
    ON frame_metadata (captured_at, camera_id)
    WHERE motion_score >= 0.5;

INSERT INTO framemeta_config (key, value) VALUES ('motion_threshold', '0.5');

ALTER TABLE frame_metadata OWNER TO framemeta_owner;
GRANT INSERT ON frame_metadata TO framemeta_writer;
GRANT SELECT ON frame_metadata TO framemeta_reader;
