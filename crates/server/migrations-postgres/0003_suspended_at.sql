-- When a sandbox was suspended: idle suspended sandboxes are packed (zstd).
ALTER TABLE sandboxes ADD COLUMN suspended_at BIGINT;
