-- One row per report handed to a receiving endpoint: the receipt id its
-- sender was given, and who the key server said the sender was. Several
-- receipts may name one parcel (the same bytes posted twice).
CREATE TABLE receipts (
    id TEXT PRIMARY KEY NOT NULL,
    sha256 TEXT NOT NULL REFERENCES parcels (sha256),
    sender TEXT NOT NULL,
    received_at BIGINT NOT NULL
);

CREATE INDEX receipts_by_parcel ON receipts (sha256);
