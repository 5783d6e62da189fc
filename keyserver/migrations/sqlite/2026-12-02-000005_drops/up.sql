-- Share links: a sealed report's bytes held by the key server so that a
-- recipient can open it from a link. Only sealed bytes are stored; who may
-- download them is decided, on every download, by the report's key.
--
-- The chunks of an upload are written first, outside the audit writer (a
-- 200 MB video must not hold the store's write lock); the drop exists, and
-- can be downloaded, only once its row commits together with its
-- drop.created event. Chunks without a row are an abandoned upload and are
-- purged.
CREATE TABLE drops (
    drop_id TEXT PRIMARY KEY NOT NULL,
    org_id BIGINT NOT NULL REFERENCES orgs(id),
    creator_id BIGINT NOT NULL REFERENCES users(id),
    key_id TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 BLOB NOT NULL,
    chunks INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX drops_expiry ON drops (expires_at);

CREATE TABLE drop_chunks (
    drop_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    written_at BIGINT NOT NULL,
    PRIMARY KEY (drop_id, seq)
);
CREATE INDEX drop_chunks_written ON drop_chunks (written_at);

-- The longest an organisation lets a share link live, in days (1-30);
-- NULL: the default, 30.
ALTER TABLE orgs ADD COLUMN drop_max_days INTEGER;
