-- The custody log: an append-only record of what happened to each recording, in two
-- SHA-256 hash chains (one per recording, one over every event), so that an edit or a
-- removal is detectable (`webex-archiver verify --log`). Each event is appended in the
-- transaction that changes the recording's state.

CREATE TABLE events (
    -- Global order: 1, 2, 3, ... with no gap (taken from events_head).
    seq                BIGINT      PRIMARY KEY,
    -- The recording; NULL for an event about no recording (an unreadable listing item
    -- without a usable id).
    recording_id       TEXT,
    -- What happened: 'discovered', 'claimed', 'archived', ... Text, not an enum: later
    -- kinds (deletion at the source, legal hold) need no migration.
    type               TEXT        NOT NULL,
    at                 TIMESTAMPTZ NOT NULL,
    data               JSONB       NOT NULL,
    -- SHA-256 (hex) of the previous event of the same recording, and of the previous
    -- event overall; NULL for the first.
    prev_sha256        TEXT,
    prev_global_sha256 TEXT,
    -- SHA-256 (hex) of this event's canonical encoding, both previous hashes included.
    sha256             TEXT        NOT NULL
);

CREATE INDEX events_recording ON events (recording_id, seq);

-- The heads of the global chain: one row, locked (UPDATE) by each appending transaction,
-- which serialises appends across replicas.
CREATE TABLE events_head (
    id     SMALLINT PRIMARY KEY CHECK (id = 1),
    seq    BIGINT   NOT NULL,
    sha256 TEXT
);
INSERT INTO events_head (id, seq) VALUES (1, 0);

CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the custody log (events) is append-only: % refused', TG_OP;
END
$$;

CREATE TRIGGER events_no_update_or_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
