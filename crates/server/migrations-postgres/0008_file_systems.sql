-- Persistent volumes ("file systems", docs/volumes.md): one row per volume of a namespace.
-- Its data is an ext4 image under <data-dir>/volumes/<key>/, where key is derived from
-- namespace and name. Where it is mounted is the `file_systems` column of the live sandboxes.
CREATE TABLE file_systems (
    namespace   TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    size_mb     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (namespace, name)
);

-- The volumes mounted in a sandbox (JSON list of FileSystemMount); NULL means none.
ALTER TABLE sandboxes ADD COLUMN file_systems TEXT;

-- The volumes a snapshot's source had mounted: a memory snapshot restores with them.
ALTER TABLE snapshots ADD COLUMN file_systems TEXT;
