-- Archived sandboxes: an ended sandbox stays queryable under /archived-sandboxes until
-- `--archive-ttl` after `archived_at`, then the purge deletes its row. Rows that
-- ended before this migration are archived as of when they ended (or were created,
-- for the few that never recorded an end).
ALTER TABLE sandboxes ADD COLUMN archived_at BIGINT;

UPDATE sandboxes
   SET archived_at = COALESCE(terminated_at, created_at)
 WHERE status IN ('terminated', 'failed', 'timeout');

-- Pages of the archive, newest first, and the purge's scan: only archived rows.
CREATE INDEX sandboxes_archived
    ON sandboxes (namespace, archived_at, id)
    WHERE archived_at IS NOT NULL;
CREATE INDEX sandboxes_archived_expiry
    ON sandboxes (archived_at)
    WHERE archived_at IS NOT NULL;
