-- The server's background passes (timeouts every second, packing and uploads of suspended
-- sandboxes, warm pools) read only the rows they act on, through these indexes, instead of
-- every live sandbox: their cost no longer grows with the sandboxes up, nor with the ended
-- ones kept in the archive.
CREATE INDEX sandboxes_live_deadline
    ON sandboxes (deadline_at)
    WHERE deadline_at IS NOT NULL AND status NOT IN ('terminated', 'failed');

CREATE INDEX sandboxes_suspended
    ON sandboxes (created_at)
    WHERE status = 'suspended';

CREATE INDEX sandboxes_live_idle_pool_members
    ON sandboxes (created_at)
    WHERE pool_state = 'idle' AND status NOT IN ('terminated', 'failed');
