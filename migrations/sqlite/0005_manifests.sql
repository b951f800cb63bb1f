-- Daily manifests, SQLite flavour (see migrations/postgres).

CREATE TABLE manifests (
    seq          INTEGER PRIMARY KEY NOT NULL,
    day          TEXT    NOT NULL,
    part         INTEGER NOT NULL,
    key          TEXT    NOT NULL UNIQUE,
    sha256       TEXT    NOT NULL,
    prev_sha256  TEXT,
    recordings   INTEGER NOT NULL,
    files        INTEGER NOT NULL,
    written_at   INTEGER NOT NULL,
    UNIQUE (day, part)
);

ALTER TABLE recordings ADD COLUMN manifest_seq INTEGER;
CREATE INDEX recordings_unmanifested ON recordings (create_time) WHERE state = 'archived' AND manifest_seq IS NULL;

CREATE TABLE manifest_lock (
    id         INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    owner      TEXT,
    expires_at INTEGER
);
INSERT INTO manifest_lock (id) VALUES (1);
