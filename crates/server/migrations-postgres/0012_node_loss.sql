-- Node loss. `stopped_at`: the node gave its lease back in a clean stop (its sandboxes keep
-- running on its machine, waiting for it to come back). `lost_at`: another node declared it
-- lost after its lease ran out (marking its running sandboxes lost and taking over its
-- suspended sandboxes that are in the blob store); `reaped_at`: that work is done. A node
-- comes back only once its loss is reaped; registering again clears all three.
ALTER TABLE nodes ADD COLUMN stopped_at BIGINT;
ALTER TABLE nodes ADD COLUMN lost_at BIGINT;
ALTER TABLE nodes ADD COLUMN reaped_at BIGINT;
