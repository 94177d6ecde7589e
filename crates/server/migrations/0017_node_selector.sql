-- The labels a sandbox's node must have (`node_selector` of its create, a JSON object of
-- label → value): placement, resume elsewhere and copies go only to nodes whose labels match.
-- NULL: any node.
ALTER TABLE sandboxes ADD COLUMN node_selector TEXT;
