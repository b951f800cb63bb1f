-- Listing items discovery could not read. Same meaning as migrations/postgres; times
-- are integer milliseconds since the Unix epoch (UTC).

CREATE TABLE quarantine (
    key           TEXT PRIMARY KEY NOT NULL,
    recording_id  TEXT,
    scope         TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    raw           TEXT    NOT NULL,
    tracking_id   TEXT,
    window_from   INTEGER,
    window_to     INTEGER,
    first_seen_at INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    seen_count    INTEGER NOT NULL DEFAULT 1,
    checked_at    INTEGER,
    check_note    TEXT,
    released_at   INTEGER,
    released_how  TEXT
);

CREATE INDEX quarantine_open ON quarantine (scope, key) WHERE released_at IS NULL;
CREATE INDEX quarantine_open_recording ON quarantine (recording_id) WHERE released_at IS NULL;
CREATE INDEX quarantine_last_seen ON quarantine (last_seen_at) WHERE released_at IS NULL;
