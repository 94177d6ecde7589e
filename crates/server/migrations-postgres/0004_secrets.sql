-- Secrets: values sealed with ChaCha20-Poly1305 under <data-dir>/secrets.key,
-- with namespace and name as associated data. Plaintext never touches this table.
CREATE TABLE secrets (
    namespace   TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    nonce       BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (namespace, name)
);
