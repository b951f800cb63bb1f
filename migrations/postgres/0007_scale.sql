-- What keeps status, /metrics and the work queue's questions from growing with the
-- table (issue 16): indexes that answer each of them from a few index entries, and the
-- shared counts that /metrics reads instead of counting on every scrape.

-- Recordings and archived bytes per state, read from the index alone (an index-only
-- scan). It also serves every `state = ...` lookup the index it replaces served.
CREATE INDEX recordings_state_bytes ON recordings (state, bytes);
DROP INDEX recordings_state;
-- The oldest recording neither archived nor final for a stated reason (status, /metrics).
CREATE INDEX recordings_unarchived ON recordings (create_time) WHERE state IN ('pending', 'archiving', 'failed');
-- The latest final failures (status).
CREATE INDEX recordings_final_failures ON recordings (updated_at)
    WHERE state IN ('failed', 'not_downloadable', 'lost_at_source');
-- The few recordings whose size differed, or whose lease expired with their worker gone.
CREATE INDEX recordings_size_mismatch ON recordings (id) WHERE size_mismatch;
CREATE INDEX recordings_lease_expiries ON recordings (lease_expiries) WHERE lease_expiries > 0;

-- Recordings per state (and gone at the source), counted at most every few seconds by
-- whichever replica finds the counts stale, for /metrics. One row.
CREATE TABLE recording_counts (
    id                SMALLINT    PRIMARY KEY CHECK (id = 1),
    -- When they were counted; NULL until the first count.
    counted_at        TIMESTAMPTZ,
    -- Recordings per state name, as a JSON object (a new state needs no migration).
    counts            JSONB       NOT NULL DEFAULT '{}',
    deleted_at_source BIGINT      NOT NULL DEFAULT 0,
    purged_at_source  BIGINT      NOT NULL DEFAULT 0,
    -- How long the last count took (milliseconds): counts are not taken more often than
    -- 50 times that, so counting costs at most 2% of the database's time.
    count_ms          BIGINT      NOT NULL DEFAULT 0,
    -- The process counting now, until when: the others do not wait for it, they skip.
    counting_owner    TEXT,
    counting_until    TIMESTAMPTZ
);
INSERT INTO recording_counts (id) VALUES (1);
