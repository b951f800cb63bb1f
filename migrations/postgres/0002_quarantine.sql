-- Listing items discovery could not read (not an object, no usable id, no readable
-- createTime): kept raw so that nothing listed is lost, counted in `status` and
-- /metrics, re-read on later passes and released when they read (or when their
-- recording was recorded another way).

CREATE TABLE quarantine (
    -- The recording id when the item has a usable string one, else 'sha256:<hex>' of raw.
    key           TEXT PRIMARY KEY,
    recording_id  TEXT,
    -- Discovery scope whose listing sent it: 'user' or 'admin:<siteUrl>'.
    scope         TEXT        NOT NULL,
    -- Why it could not be read, for a person.
    reason        TEXT        NOT NULL,
    -- The item's JSON text as sent, without its password (and temporary links).
    raw           TEXT        NOT NULL,
    -- Webex's trackingId of the page that last sent it.
    tracking_id   TEXT,
    -- The listing window [from, to) whose page last sent it: an item without a usable
    -- id can only be found again by listing that window again.
    window_from   TIMESTAMPTZ,
    window_to     TIMESTAMPTZ,
    first_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Pages that sent it.
    seen_count    BIGINT      NOT NULL DEFAULT 1,
    -- The last re-read (e.g. the recording's details fetched) and what it found.
    checked_at    TIMESTAMPTZ,
    check_note    TEXT,
    -- Set when it no longer needs a person: how ('reread', 'details', 'listed',
    -- 'already_recorded', 'relisted').
    released_at   TIMESTAMPTZ,
    released_how  TEXT
);

CREATE INDEX quarantine_open ON quarantine (scope, key) WHERE released_at IS NULL;
CREATE INDEX quarantine_open_recording ON quarantine (recording_id) WHERE released_at IS NULL;
CREATE INDEX quarantine_last_seen ON quarantine (last_seen_at) WHERE released_at IS NULL;
