-- The archive's truth: one row per Webex recording, one row per discovery cursor.

CREATE TABLE recordings (
    -- Webex recording id (opaque string).
    id               TEXT PRIMARY KEY,
    -- Discovery scope that listed it first: 'user' or 'admin:<siteUrl>'.
    scope            TEXT        NOT NULL,
    site_url         TEXT,
    host_email       TEXT,
    meeting_id       TEXT,
    topic            TEXT,
    format           TEXT,
    create_time      TIMESTAMPTZ NOT NULL,
    size_bytes       BIGINT,
    -- The listing object as Webex sent it, without the recording password.
    listing          JSONB       NOT NULL,
    discovered_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_listed_at   TIMESTAMPTZ NOT NULL DEFAULT now(),

    state            TEXT        NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'archiving', 'archived', 'failed', 'not_downloadable')),
    -- Attempts started (a claim starts one; a release that was not the recording's
    -- fault gives it back).
    attempts         INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Lease of the worker archiving it: a claim token and its expiry.
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    -- Times a lease expired with the recording still claimed (its worker died).
    lease_expiries   INTEGER     NOT NULL DEFAULT 0,
    -- Why the last attempt failed: a short class ('http_5xx', 'truncated', ...) and a message.
    failure_reason   TEXT,
    last_error       TEXT,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),

    -- Once archived: the recording's directory and files, the main file's digest and size.
    object_prefix    TEXT,
    media_key        TEXT,
    metadata_key     TEXT,
    sha256           TEXT,
    bytes            BIGINT,
    files            JSONB,
    size_mismatch    BOOLEAN     NOT NULL DEFAULT FALSE,
    archived_at      TIMESTAMPTZ,

    CHECK (state <> 'archived' OR (media_key IS NOT NULL AND metadata_key IS NOT NULL
                                   AND sha256 IS NOT NULL AND bytes IS NOT NULL AND archived_at IS NOT NULL)),
    CHECK (state <> 'archiving' OR (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
);

-- The work queue: what is due, soonest first.
CREATE INDEX recordings_due ON recordings (next_attempt_at) WHERE state = 'pending';
CREATE INDEX recordings_leased ON recordings (lease_expires_at) WHERE state = 'archiving';
CREATE INDEX recordings_state ON recordings (state);
CREATE INDEX recordings_create_time ON recordings (create_time);

CREATE TABLE cursors (
    -- 'user' or 'admin:<siteUrl>'.
    scope            TEXT        NOT NULL,
    -- 'sync' (the live edge) or 'backfill' (older history).
    kind             TEXT        NOT NULL CHECK (kind IN ('sync', 'backfill')),
    -- Every window before this instant has been listed to its last page.
    position         TIMESTAMPTZ NOT NULL,
    -- For backfill: the range asked for.
    range_start      TIMESTAMPTZ,
    range_end        TIMESTAMPTZ,
    -- Only one replica lists a scope at a time.
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    last_pass_at     TIMESTAMPTZ,
    last_success_at  TIMESTAMPTZ,
    last_error       TEXT,
    items_listed     BIGINT      NOT NULL DEFAULT 0,
    items_skipped    BIGINT      NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, kind)
);

-- A Retry-After pause shared by every replica using the same token.
CREATE TABLE rate_limit (
    id           SMALLINT    PRIMARY KEY CHECK (id = 1),
    paused_until TIMESTAMPTZ NOT NULL,
    pauses       BIGINT      NOT NULL DEFAULT 0
);
INSERT INTO rate_limit (id, paused_until) VALUES (1, 'epoch');

-- OAuth tokens: the newest refresh token survives restarts; one replica refreshes at a time.
CREATE TABLE oauth_tokens (
    client_id          TEXT PRIMARY KEY,
    access_token       TEXT,
    access_expires_at  TIMESTAMPTZ,
    refresh_token      TEXT        NOT NULL,
    -- SHA-256 of the configured refresh token these descend from: a new one configured
    -- by an operator (re-authorisation) wins over the stored chain.
    seed_sha256        TEXT,
    refresh_expires_at TIMESTAMPTZ,
    refreshed_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    refreshes          BIGINT      NOT NULL DEFAULT 0,
    lock_owner         TEXT,
    lock_expires_at    TIMESTAMPTZ
);
