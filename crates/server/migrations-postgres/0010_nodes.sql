-- The Alcove servers using this store. A node registers at start under its unique name,
-- with the id of its data directory (`machine`, kept in `<data-dir>/node-id`: a restart on
-- the same directory takes its name back at once) and a random `instance` for this run, and renews `lease_expires_at` every
-- few seconds, reporting what its sandboxes use. A name or subnet is held while its lease
-- runs; `state` (active or draining) is kept across restarts.
CREATE TABLE nodes (
    name              TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    machine           TEXT NOT NULL,
    instance          TEXT NOT NULL,
    address           TEXT NOT NULL,
    subnet            TEXT NOT NULL,
    labels            TEXT NOT NULL DEFAULT '{}',
    state             TEXT NOT NULL DEFAULT 'active',
    version           TEXT NOT NULL,
    cpus              DOUBLE PRECISION NOT NULL,
    memory_mb         BIGINT NOT NULL,
    used_cpus         DOUBLE PRECISION NOT NULL DEFAULT 0,
    used_memory_mb    BIGINT NOT NULL DEFAULT 0,
    running           BIGINT NOT NULL DEFAULT 0,
    suspended         BIGINT NOT NULL DEFAULT 0,
    started_at        BIGINT NOT NULL,
    lease_expires_at  BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
