-- Sandboxes: every state change is written here before it is acted on.
CREATE TABLE sandboxes (
    id                  TEXT PRIMARY KEY NOT NULL,
    namespace           TEXT NOT NULL,
    name                TEXT,
    status              TEXT NOT NULL,
    image               TEXT NOT NULL,
    cpus                REAL NOT NULL,
    memory_mb           INTEGER NOT NULL,
    disk_mb             INTEGER NOT NULL,
    timeout_secs        INTEGER NOT NULL DEFAULT 0,
    entrypoint          TEXT NOT NULL DEFAULT '[]',
    network_policy      TEXT NOT NULL,
    secret_names        TEXT NOT NULL DEFAULT '[]',
    exposed_ports       TEXT NOT NULL DEFAULT '[]',
    allow_unauthenticated_access INTEGER NOT NULL DEFAULT 0,
    auto_resume         INTEGER NOT NULL DEFAULT 1,
    slot                INTEGER,
    created_at          INTEGER NOT NULL,
    terminated_at       INTEGER,
    deadline_at         INTEGER,
    pending_reason      TEXT,
    termination_reason  TEXT,
    error_details       TEXT
);

-- Names are unique among live sandboxes; an ended sandbox frees its name.
CREATE UNIQUE INDEX sandboxes_live_name
    ON sandboxes (name)
    WHERE name IS NOT NULL AND status NOT IN ('terminated', 'failed');

CREATE INDEX sandboxes_by_namespace ON sandboxes (namespace, created_at);
