-- Suspend/resume: the timeout left when suspended (suspended time does not
-- count), and the operation in flight ('suspending' is a status; a resume in
-- flight keeps status 'suspended' on the wire, so it is recorded here).
ALTER TABLE sandboxes ADD COLUMN timeout_remaining_ms INTEGER;
ALTER TABLE sandboxes ADD COLUMN transition TEXT;

-- Snapshots: a copy of a sandbox's writable layer, plus a CRIU dump of its
-- processes for memory snapshots. Files live in <data-dir>/snapshots/<id>/.
CREATE TABLE snapshots (
    id              TEXT PRIMARY KEY NOT NULL,
    namespace       TEXT NOT NULL,
    sandbox_id      TEXT NOT NULL,
    status          TEXT NOT NULL,
    snapshot_type   TEXT NOT NULL,
    image           TEXT NOT NULL,
    cpus            REAL NOT NULL,
    memory_mb       INTEGER NOT NULL,
    disk_mb         INTEGER NOT NULL,
    entrypoint      TEXT NOT NULL DEFAULT '[]',
    size_bytes      INTEGER,
    created_at      INTEGER NOT NULL,
    completed_at    INTEGER,
    error           TEXT
);

CREATE INDEX snapshots_by_namespace ON snapshots (namespace, created_at);
CREATE INDEX snapshots_by_sandbox ON snapshots (sandbox_id, created_at);
