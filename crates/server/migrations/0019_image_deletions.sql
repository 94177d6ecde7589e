-- Images deleted, and names removed, through one node, so that the other nodes remove their
-- fetched copies too: `target` is an image id (`sha256:…`, the whole image) or a name
-- (`name:tag`); `image_id` the image it was or pointed at. Sharing the image again under
-- that id or name removes the row; rows older than a week are purged.
CREATE TABLE image_deletions (
    target      TEXT PRIMARY KEY,
    image_id    TEXT NOT NULL,
    deleted_at  INTEGER NOT NULL
);
