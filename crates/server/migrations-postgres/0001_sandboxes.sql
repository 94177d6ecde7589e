-- Sandboxes: every state change is written here before it is acted on.
-- The PostgreSQL twin of migrations/0001_sandboxes.sql: same columns, PostgreSQL's types
-- (64-bit integers, doubles, booleans; JSON stays in TEXT, written and read by the server).
-- Keys and names sort bytewise (COLLATE "C"), as in SQLite, whatever the database's locale.
CREATE TABLE sandboxes (
    id                  TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    namespace           TEXT COLLATE "C" NOT NULL,
    name                TEXT COLLATE "C",
    status              TEXT NOT NULL,
    image               TEXT NOT NULL,
    cpus                DOUBLE PRECISION NOT NULL,
    memory_mb           BIGINT NOT NULL,
    disk_mb             BIGINT NOT NULL,
    timeout_secs        BIGINT NOT NULL DEFAULT 0,
    entrypoint          TEXT NOT NULL DEFAULT '[]',
    network_policy      TEXT NOT NULL,
    secret_names        TEXT NOT NULL DEFAULT '[]',
    exposed_ports       TEXT NOT NULL DEFAULT '[]',
    allow_unauthenticated_access BOOLEAN NOT NULL DEFAULT FALSE,
    auto_resume         BOOLEAN NOT NULL DEFAULT TRUE,
    slot                BIGINT,
    created_at          BIGINT NOT NULL,
    terminated_at       BIGINT,
    deadline_at         BIGINT,
    pending_reason      TEXT,
    termination_reason  TEXT,
    error_details       TEXT
);

-- Names are unique among live sandboxes; an ended sandbox frees its name.
CREATE UNIQUE INDEX sandboxes_live_name
    ON sandboxes (name)
    WHERE name IS NOT NULL AND status NOT IN ('terminated', 'failed');

CREATE INDEX sandboxes_by_namespace ON sandboxes (namespace, created_at);
