-- How many times its CPUs and memory a node may promise to sandboxes: a create placed on a
-- node adds its reservation to `used_cpus` and `used_memory_mb` with one conditional update,
-- which fails when the node has no room left (so two nodes placing at once never overbook
-- a third); each renewal sets them back to what the node's sandboxes reserve.
ALTER TABLE nodes ADD COLUMN cpu_overcommit REAL NOT NULL DEFAULT 1;
ALTER TABLE nodes ADD COLUMN memory_overcommit REAL NOT NULL DEFAULT 1;
