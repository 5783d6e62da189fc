-- One row per sealed file put in the outbox, by content.
CREATE TABLE parcels (
    sha256 TEXT PRIMARY KEY NOT NULL,
    file_name TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- One row per (sealed file, destination): the unit that is retried.
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    sha256 TEXT NOT NULL REFERENCES parcels (sha256),
    destination TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    receipt TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (sha256, destination)
);

CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);
