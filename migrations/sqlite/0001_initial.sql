-- The archive's truth, SQLite flavour. Same meaning as migrations/postgres; times are
-- integer milliseconds since the Unix epoch (UTC), which compare and index exactly.

CREATE TABLE recordings (
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
        CHECK (state IN ('pending', 'archiving', 'archived', 'failed', 'not_downloadable')),
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

    CHECK (state <> 'archived' OR (media_key IS NOT NULL AND metadata_key IS NOT NULL
                                   AND sha256 IS NOT NULL AND bytes IS NOT NULL AND archived_at IS NOT NULL)),
    CHECK (state <> 'archiving' OR (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
);

CREATE INDEX recordings_due ON recordings (next_attempt_at) WHERE state = 'pending';
CREATE INDEX recordings_leased ON recordings (lease_expires_at) WHERE state = 'archiving';
CREATE INDEX recordings_state ON recordings (state);
CREATE INDEX recordings_create_time ON recordings (create_time);

CREATE TABLE cursors (
    scope            TEXT    NOT NULL,
    kind             TEXT    NOT NULL CHECK (kind IN ('sync', 'backfill')),
    position         INTEGER NOT NULL,
    range_start      INTEGER,
    range_end        INTEGER,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    last_pass_at     INTEGER,
    last_success_at  INTEGER,
    last_error       TEXT,
    items_listed     INTEGER NOT NULL DEFAULT 0,
    items_skipped    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, kind)
);

CREATE TABLE rate_limit (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    paused_until INTEGER NOT NULL,
    pauses       INTEGER NOT NULL DEFAULT 0
);
INSERT INTO rate_limit (id, paused_until) VALUES (1, 0);

CREATE TABLE oauth_tokens (
    client_id          TEXT PRIMARY KEY NOT NULL,
    access_token       TEXT,
    access_expires_at  INTEGER,
    refresh_token      TEXT    NOT NULL,
    -- SHA-256 of the configured refresh token these descend from: a new one configured
    -- by an operator (re-authorisation) wins over the stored chain.
    seed_sha256        TEXT,
    refresh_expires_at INTEGER,
    refreshed_at       INTEGER NOT NULL,
    refreshes          INTEGER NOT NULL DEFAULT 0,
    lock_owner         TEXT,
    lock_expires_at    INTEGER
);
