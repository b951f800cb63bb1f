-- The custody log. Same meaning as migrations/postgres; times are integer milliseconds
-- since the Unix epoch (UTC), data is JSON text. BEGIN IMMEDIATE serialises appends.

CREATE TABLE events (
    seq                INTEGER PRIMARY KEY NOT NULL,
    recording_id       TEXT,
    type               TEXT    NOT NULL,
    at                 INTEGER NOT NULL,
    data               TEXT    NOT NULL,
    prev_sha256        TEXT,
    prev_global_sha256 TEXT,
    sha256             TEXT    NOT NULL
);

CREATE INDEX events_recording ON events (recording_id, seq);

CREATE TABLE events_head (
    id     INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq    INTEGER NOT NULL,
    sha256 TEXT
);
INSERT INTO events_head (id, seq) VALUES (1, 0);

-- Whoever can write the file can drop these; `verify --log` checks the chains anyway.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the custody log (events) is append-only: UPDATE refused');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the custody log (events) is append-only: DELETE refused');
END;
