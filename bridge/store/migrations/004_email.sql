-- 004 email: the durable inbox of inbound e-mail, written before SMTP answers 250.
-- raw is the message exactly as received, sealed (AES-GCM) and bound to the row id.
-- A redelivery of the same message (same pair, From address and Message-ID) finds
-- the UNIQUE constraint and is recorded once. Times are BIGINT ms since the epoch.

CREATE TABLE inbound_emails (
    id TEXT PRIMARY KEY,                -- random, never shown
    pair_id TEXT NOT NULL REFERENCES pairs (pair_id),
    message_id TEXT NOT NULL,           -- the Message-ID, or one derived from the bytes
    sender TEXT NOT NULL,               -- the normalised From address
    received_at BIGINT NOT NULL,
    raw BLOB NOT NULL,                  -- sealed
    raw_size BIGINT NOT NULL,
    auth_method TEXT NOT NULL,          -- how the sender was authenticated: dkim, spf, mta
    status TEXT NOT NULL
        CHECK (status IN ('accepted', 'relayed', 'failed')),
    relay_txn_id TEXT,                  -- the outbox txn id of the post, once relayed
    relayed_at BIGINT,
    last_error TEXT,                    -- an error class or code, never content
    UNIQUE (pair_id, sender, message_id)
);

CREATE INDEX inbound_emails_status ON inbound_emails (status, received_at);
