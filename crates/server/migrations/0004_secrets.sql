-- Secrets: values sealed with ChaCha20-Poly1305 under <data-dir>/secrets.key,
-- with namespace and name as associated data. Plaintext never touches this table.
CREATE TABLE secrets (
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
);
