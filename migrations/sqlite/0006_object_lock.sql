-- S3 Object Lock: the retention the archiver applied to a recording's objects (and read
-- back with HEAD before marking it archived), and legal holds. Each change is also an
-- event of the custody log; these columns are what queries need.

-- The earliest retain-until date among the recording's object versions, as HEAD read it
-- back (NULL: no retention applied by the archiver).
ALTER TABLE recordings ADD COLUMN retained_until INTEGER;
-- The retention mode applied: 'GOVERNANCE' or 'COMPLIANCE' (NULL: none).
ALTER TABLE recordings ADD COLUMN retention_mode TEXT;
-- A legal hold is on every version of every object of the recording.
ALTER TABLE recordings ADD COLUMN legal_hold INTEGER NOT NULL DEFAULT 0;
-- When the hold was last put on or taken off, by whom and why.
-- (SQLite: times are milliseconds since the epoch, as in every other table.)
ALTER TABLE recordings ADD COLUMN legal_hold_at INTEGER;
ALTER TABLE recordings ADD COLUMN legal_hold_by TEXT;
ALTER TABLE recordings ADD COLUMN legal_hold_reason TEXT;
CREATE INDEX recordings_under_hold ON recordings (id) WHERE legal_hold;

-- A daily manifest's version id and the retention applied to it.
ALTER TABLE manifests ADD COLUMN version_id TEXT;
ALTER TABLE manifests ADD COLUMN retained_until INTEGER;
