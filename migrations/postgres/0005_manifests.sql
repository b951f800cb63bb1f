-- Daily manifests: one object per UTC day of createTime (and supplements for later
-- arrivals) listing every archived file of that day, chained by SHA-256 in the order
-- they were written. This table is the chain's index; the objects are the evidence.

CREATE TABLE manifests (
    -- Order of writing: 1, 2, 3, ...
    seq          BIGINT      PRIMARY KEY,
    -- The UTC day of createTime it covers, as 'YYYY-MM-DD'.
    day          TEXT        NOT NULL,
    -- 0 for DD.json, n for the supplement DD.n.json.
    part         INTEGER     NOT NULL,
    -- Object key, relative to the storage prefix.
    key          TEXT        NOT NULL UNIQUE,
    -- SHA-256 (hex) of the object's bytes.
    sha256       TEXT        NOT NULL,
    -- The manifest written before it (NULL for the first).
    prev_sha256  TEXT,
    recordings   BIGINT      NOT NULL,
    files        BIGINT      NOT NULL,
    written_at   TIMESTAMPTZ NOT NULL,
    UNIQUE (day, part)
);

-- The manifest a recording is listed in (NULL until then).
ALTER TABLE recordings ADD COLUMN manifest_seq BIGINT;
CREATE INDEX recordings_unmanifested ON recordings (create_time) WHERE state = 'archived' AND manifest_seq IS NULL;

-- One writer of manifests at a time across replicas: a lock with an expiry.
CREATE TABLE manifest_lock (
    id              SMALLINT    PRIMARY KEY CHECK (id = 1),
    owner           TEXT,
    expires_at      TIMESTAMPTZ
);
INSERT INTO manifest_lock (id) VALUES (1);
