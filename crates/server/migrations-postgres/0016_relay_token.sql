-- Settings every node of a cluster shares. `relay_token`: a random secret the first node
-- writes; a node relaying a request to another adds it, and a node trusts the relay headers
-- (`x-alcove-forwarded-by` and the like) only on a request that carries it, so that clients
-- cannot forge them. It never reaches a sandbox.
CREATE TABLE cluster_settings (
    name    TEXT PRIMARY KEY,
    value   TEXT NOT NULL
);
