-- Indexes and shared counts for scale, SQLite flavour (see migrations/postgres).

CREATE INDEX recordings_state_bytes ON recordings (state, bytes);
DROP INDEX recordings_state;
CREATE INDEX recordings_unarchived ON recordings (create_time) WHERE state IN ('pending', 'archiving', 'failed');
CREATE INDEX recordings_final_failures ON recordings (updated_at)
    WHERE state IN ('failed', 'not_downloadable', 'lost_at_source');
CREATE INDEX recordings_size_mismatch ON recordings (id) WHERE size_mismatch;
CREATE INDEX recordings_lease_expiries ON recordings (lease_expiries) WHERE lease_expiries > 0;

CREATE TABLE recording_counts (
    id                INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    counted_at        INTEGER,
    counts            TEXT    NOT NULL DEFAULT '{}',
    deleted_at_source INTEGER NOT NULL DEFAULT 0,
    purged_at_source  INTEGER NOT NULL DEFAULT 0,
    count_ms          INTEGER NOT NULL DEFAULT 0,
    counting_owner    TEXT,
    counting_until    INTEGER
);
INSERT INTO recording_counts (id) VALUES (1);
