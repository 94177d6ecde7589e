-- Objects this server put in the blob store: what they belong to (`snapshot:<id>` or
-- `sandbox:<id>`), and the sha256 and size recorded at upload, which every download is
-- checked against.
CREATE TABLE blobs (
    key         TEXT PRIMARY KEY NOT NULL,
    owner       TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE INDEX blobs_by_owner ON blobs (owner);
