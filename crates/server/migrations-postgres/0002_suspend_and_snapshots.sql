-- Suspend/resume: the timeout left when suspended (suspended time does not
-- count), and the operation in flight ('suspending' is a status; a resume in
-- flight keeps status 'suspended' on the wire, so it is recorded here).
ALTER TABLE sandboxes ADD COLUMN timeout_remaining_ms BIGINT;
ALTER TABLE sandboxes ADD COLUMN transition TEXT;

-- Snapshots: a copy of a sandbox's writable layer, plus a CRIU dump of its
-- processes for memory snapshots. Files live in <data-dir>/snapshots/<id>/.
CREATE TABLE snapshots (
    id              TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    namespace       TEXT COLLATE "C" NOT NULL,
    sandbox_id      TEXT COLLATE "C" NOT NULL,
    status          TEXT NOT NULL,
    snapshot_type   TEXT NOT NULL,
    image           TEXT NOT NULL,
    cpus            DOUBLE PRECISION NOT NULL,
    memory_mb       BIGINT NOT NULL,
    disk_mb         BIGINT NOT NULL,
    entrypoint      TEXT NOT NULL DEFAULT '[]',
    size_bytes      BIGINT,
    created_at      BIGINT NOT NULL,
    completed_at    BIGINT,
    error           TEXT
);

CREATE INDEX snapshots_by_namespace ON snapshots (namespace, created_at);
CREATE INDEX snapshots_by_sandbox ON snapshots (sandbox_id, created_at);
