-- Objects this server put in the blob store: what they belong to (`snapshot:<id>` or
-- `sandbox:<id>`), and the sha256 and size recorded at upload, which every download is
-- checked against.
CREATE TABLE blobs (
    key         TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    owner       TEXT COLLATE "C" NOT NULL,
    sha256      TEXT NOT NULL,
    size        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE INDEX blobs_by_owner ON blobs (owner);
