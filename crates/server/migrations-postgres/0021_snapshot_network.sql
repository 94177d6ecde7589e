-- The network policy of a snapshot's source: a restore that names none gets it, so a sandbox
-- kept from the internet does not come back with it (its processes running, for a memory
-- snapshot). NULL for snapshots taken before: they restore open, as they did.
ALTER TABLE snapshots ADD COLUMN network_policy TEXT;
