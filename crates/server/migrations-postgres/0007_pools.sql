-- Warm pools: a configuration, and how many idle sandboxes of it to keep started.
CREATE TABLE pools (
    id               TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    namespace        TEXT COLLATE "C" NOT NULL,
    image            TEXT NOT NULL,
    cpus             DOUBLE PRECISION NOT NULL,
    memory_mb        BIGINT NOT NULL,
    disk_mb          BIGINT NOT NULL,
    timeout_secs     BIGINT NOT NULL DEFAULT 0,
    entrypoint       TEXT NOT NULL DEFAULT '[]',
    network_policy   TEXT NOT NULL,
    max_containers   BIGINT,
    warm_containers  BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

CREATE INDEX pools_by_namespace ON pools (namespace, created_at);

-- A pool's sandboxes: `pool_id` names the pool, `pool_state` is idle (waiting for a
-- claim), claiming (being handed out) or claimed; both NULL for a sandbox of no pool.
ALTER TABLE sandboxes ADD COLUMN pool_id TEXT COLLATE "C";
ALTER TABLE sandboxes ADD COLUMN pool_state TEXT;

CREATE INDEX sandboxes_by_pool ON sandboxes (pool_id, pool_state) WHERE pool_id IS NOT NULL;
