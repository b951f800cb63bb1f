-- Deletion tracking at the source, SQLite flavour (see migrations/postgres). SQLite
-- cannot change a CHECK constraint in place: the table is rebuilt with the new state
-- and the two new columns, its rows copied as they are.

CREATE TABLE recordings_new (
    id               TEXT PRIMARY KEY NOT NULL,
    scope            TEXT    NOT NULL,
    site_url         TEXT,
    host_email       TEXT,
    meeting_id       TEXT,
    topic            TEXT,
    format           TEXT,
    create_time      INTEGER NOT NULL,
    size_bytes       INTEGER,
    listing          TEXT    NOT NULL,
    discovered_at    INTEGER NOT NULL,
    last_listed_at   INTEGER NOT NULL,

    state            TEXT    NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'archiving', 'archived', 'failed', 'not_downloadable', 'lost_at_source')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    lease_expiries   INTEGER NOT NULL DEFAULT 0,
    failure_reason   TEXT,
    last_error       TEXT,
    updated_at       INTEGER NOT NULL,

    object_prefix    TEXT,
    media_key        TEXT,
    metadata_key     TEXT,
    sha256           TEXT,
    bytes            INTEGER,
    files            TEXT,
    size_mismatch    INTEGER NOT NULL DEFAULT 0,
    archived_at      INTEGER,

    deleted_at_source INTEGER,
    purged_at_source  INTEGER,

    CHECK (state <> 'archived' OR (media_key IS NOT NULL AND metadata_key IS NOT NULL
                                   AND sha256 IS NOT NULL AND bytes IS NOT NULL AND archived_at IS NOT NULL)),
    CHECK (state <> 'archiving' OR (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
);

INSERT INTO recordings_new (
    id, scope, site_url, host_email, meeting_id, topic, format, create_time, size_bytes, listing,
    discovered_at, last_listed_at, state, attempts, next_attempt_at, lease_owner, lease_expires_at,
    lease_expiries, failure_reason, last_error, updated_at, object_prefix, media_key, metadata_key,
    sha256, bytes, files, size_mismatch, archived_at)
SELECT
    id, scope, site_url, host_email, meeting_id, topic, format, create_time, size_bytes, listing,
    discovered_at, last_listed_at, state, attempts, next_attempt_at, lease_owner, lease_expires_at,
    lease_expiries, failure_reason, last_error, updated_at, object_prefix, media_key, metadata_key,
    sha256, bytes, files, size_mismatch, archived_at
FROM recordings;

DROP TABLE recordings;
ALTER TABLE recordings_new RENAME TO recordings;

CREATE INDEX recordings_due ON recordings (next_attempt_at) WHERE state = 'pending';
CREATE INDEX recordings_leased ON recordings (lease_expires_at) WHERE state = 'archiving';
CREATE INDEX recordings_state ON recordings (state);
CREATE INDEX recordings_create_time ON recordings (create_time);
CREATE INDEX recordings_deleted_at_source ON recordings (deleted_at_source) WHERE deleted_at_source IS NOT NULL;
CREATE INDEX recordings_purged_at_source ON recordings (purged_at_source) WHERE purged_at_source IS NOT NULL;

CREATE TABLE deletion_sweeps (
    scope           TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('deleted', 'purged')),
    last_pass_at    INTEGER,
    last_success_at INTEGER,
    last_error      TEXT,
    items_listed    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, status)
);
