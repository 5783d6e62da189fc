-- State bound to the keyring: a keyed MAC over each row's access-control
-- state, recomputed in the transaction that changes it (see
-- keyserver/src/integrity.rs). NULL only on rows written before this
-- migration, until the store is bound once with its keyring.
ALTER TABLE data_keys ADD COLUMN state_mac BLOB;
ALTER TABLE users ADD COLUMN state_mac BLOB;
ALTER TABLE sessions ADD COLUMN state_mac BLOB;

-- The store's committed head, besides the chain: the current master-key
-- version (new data keys are wrapped under it, read inside the writing
-- transaction), the Merkle tree's frontier (the roots of its perfect
-- subtrees, left to right, 32 bytes each), and whether the rows above have
-- been bound to the keyring.
ALTER TABLE audit_head ADD COLUMN kek_current INTEGER NOT NULL DEFAULT 0;
ALTER TABLE audit_head ADD COLUMN frontier BLOB NOT NULL DEFAULT X'';
ALTER TABLE audit_head ADD COLUMN state_bound BOOLEAN NOT NULL DEFAULT 0;

-- A signed checkpoint for every committed batch of events.
CREATE TABLE audit_checkpoints (
    size BIGINT PRIMARY KEY NOT NULL,
    root BLOB NOT NULL,
    at BIGINT NOT NULL,
    signature BLOB NOT NULL
);
