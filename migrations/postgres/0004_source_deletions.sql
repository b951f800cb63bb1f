-- Deletion tracking at the source (Webex's recycle bin and purges): when each recording
-- was first seen deleted or purged in Webex, a final state for those that could not be
-- had any more, and when each scope was last swept for deletions.

ALTER TABLE recordings ADD COLUMN deleted_at_source TIMESTAMPTZ;
ALTER TABLE recordings ADD COLUMN purged_at_source  TIMESTAMPTZ;

-- `lost_at_source`: deleted or purged in Webex before it could be archived. Final.
ALTER TABLE recordings DROP CONSTRAINT recordings_state_check;
ALTER TABLE recordings ADD CONSTRAINT recordings_state_check
    CHECK (state IN ('pending', 'archiving', 'archived', 'failed', 'not_downloadable', 'lost_at_source'));

CREATE INDEX recordings_deleted_at_source ON recordings (deleted_at_source) WHERE deleted_at_source IS NOT NULL;
CREATE INDEX recordings_purged_at_source ON recordings (purged_at_source) WHERE purged_at_source IS NOT NULL;

-- One row per scope and source status ('deleted', 'purged'): the last deletion sweep.
CREATE TABLE deletion_sweeps (
    scope           TEXT        NOT NULL,
    status          TEXT        NOT NULL CHECK (status IN ('deleted', 'purged')),
    last_pass_at    TIMESTAMPTZ,
    last_success_at TIMESTAMPTZ,
    -- Why the last pass did not finish (or why the listing is not permitted).
    last_error      TEXT,
    -- Items the last complete pass listed.
    items_listed    BIGINT      NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, status)
);
