-- The labels the nodes of a pool's sandboxes must have (`node_selector` of the pool, a JSON
-- object of label → value): only matching nodes refill the pool. NULL: any node.
ALTER TABLE pools ADD COLUMN node_selector TEXT;
