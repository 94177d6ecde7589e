-- Images shared through the blob store: a node that pulls, imports, builds or saves an image
-- uploads its blobs (rows of `blobs`, owner `image:<id>`) and records it here; a node asked
-- for an image it does not have looks it up here by id or by name, downloads the blobs
-- (digest-checked), unpacks the layers and stores the image as if pulled.
CREATE TABLE shared_images (
    id          TEXT PRIMARY KEY,
    record      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
-- A name (`name:tag`, as the image store keys it) of a shared image.
CREATE TABLE shared_image_names (
    name        TEXT PRIMARY KEY,
    image_id    TEXT NOT NULL
);
