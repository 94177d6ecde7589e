-- The node a sandbox lives on (its name in `nodes`): only that node starts, stops, suspends,
-- resumes or serves it, and its background work (timeouts, compaction, uploads, recovery)
-- covers only its own sandboxes. NULL for rows written before nodes existed: the first node
-- to start takes them.
ALTER TABLE sandboxes ADD COLUMN node TEXT;

CREATE INDEX sandboxes_by_node ON sandboxes (node) WHERE archived_at IS NULL;
