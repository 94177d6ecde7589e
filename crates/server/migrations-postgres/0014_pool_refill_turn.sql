-- Which node refills a pool: when several nodes share the store, a node refills a pool only
-- while it holds the pool's turn (`refill_node` until `refill_until`), taken and renewed with
-- one conditional update on each pass, so that refills run once across the cluster and a
-- pool never gets more warm sandboxes than it asks for. A turn not renewed passes on.
ALTER TABLE pools ADD COLUMN refill_node TEXT;
ALTER TABLE pools ADD COLUMN refill_until BIGINT;
-- (The overcommit columns of 0013 say how much of its capacity a node may promise; each node
-- checks its own room when it stores a new sandbox, and `used_*` is what it last reported.)
