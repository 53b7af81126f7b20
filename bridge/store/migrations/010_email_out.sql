-- 010 email out: the therapist's messages sent on by e-mail to a patient who agreed to it,
-- and that agreement. Times are BIGINT ms since the epoch. No content, address or subject
-- is stored here: the mail's text is sealed in the audit (the room event's entry, and the
-- "email.sent" entry that holds the mail as it left).
--
-- One row per Matrix event sent on, written in the same transaction that marks the event
-- processed: a crash before the commit sees the event again, a crash after it finds the
-- row and sends it; the row's Message-ID is fixed when it is queued, so a mail the relay
-- took just before a crash and is sent again is the same message to the patient's client.
CREATE TABLE outbound_emails (
    event_id TEXT PRIMARY KEY,          -- the room event (or the command) the mail is for
    pair_id TEXT NOT NULL REFERENCES pairs (pair_id),
    kind TEXT NOT NULL,                 -- reply, correction, consent
    message_id TEXT NOT NULL UNIQUE,    -- with its angle brackets
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'sent', 'failed', 'withheld')),
    attempts INTEGER NOT NULL DEFAULT 0,
    -- Until when a worker holds the row while it talks to the relay: a second worker (or
    -- process) leaves it alone, and a worker that died lets it go when this passes.
    claimed_until BIGINT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    last_error TEXT                     -- an error class or reason code, never content
);

CREATE INDEX outbound_emails_status ON outbound_emails (status, created_at);
CREATE INDEX outbound_emails_pair ON outbound_emails (pair_id, sent_at);

-- The patient's consent to the e-mail channel, for the address it was given for (its
-- SHA-256: a changed address needs consent again) and the text she agreed to (its SHA-256).
CREATE TABLE email_consent (
    pair_id TEXT PRIMARY KEY REFERENCES pairs (pair_id),
    state TEXT NOT NULL CHECK (state IN ('asked', 'given', 'revoked')),
    address_sha256 TEXT,
    text_sha256 TEXT,
    ask_message_id TEXT,                -- the consent e-mail's Message-ID: a reply answers it
    changed_at BIGINT NOT NULL
);

-- The patient's OpenPGP public key: mail to her is encrypted to it (PGP/MIME). The key
-- itself is sealed (its user ids name her); the fingerprint is what people compare.
CREATE TABLE patient_keys (
    pair_id TEXT PRIMARY KEY REFERENCES pairs (pair_id),
    fingerprint TEXT NOT NULL,
    cert BLOB NOT NULL,                 -- sealed, bound to the pair id
    added_at BIGINT NOT NULL
);
