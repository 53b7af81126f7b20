-- 013 invitations sealed at rest: the patient's address and name and the registration code
-- are kept sealed (bridge/sealing.py, the audit content keys), never in clear.
--
-- SQL cannot seal, so the rows of 006's table move to `invitations_clear` here and are sealed
-- into the new table by Python on the next start, before anything reads invitations
-- (bridge/store/invitations.py: seal_clear_rows, called from bridge/parts.py open_parts);
-- that drops `invitations_clear` in the same transaction. SQLite's secure_delete (on for
-- every connection) overwrites the freed pages, so the clear bytes leave the file too.
--
-- The code is looked up by its SHA-256 (the homeserver lists tokens, the bridge finds its
-- invitation by the token's digest); it is random, so an unkeyed digest reveals nothing.
-- Its sealed copy is kept only while the invitation is pending (a resend mails the same
-- code) and is cleared when the invitation closes.
ALTER TABLE invitations RENAME TO invitations_clear;
DROP INDEX invitations_status;
DROP INDEX invitations_patient;

CREATE TABLE invitations (
    invitation_id TEXT PRIMARY KEY,     -- short, typed by the operator
    email_sealed BLOB NOT NULL,         -- Sealer blob, associated data: id and field
    name_sealed BLOB,                   -- Sealer blob, NULL when no name was given
    therapist_id TEXT NOT NULL,
    policy TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,  -- hex SHA-256 of the registration token
    token_sealed BLOB,                  -- Sealer blob while pending, NULL once closed
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'used', 'unmatched', 'revoked', 'expired')),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    unused_seen_at BIGINT NOT NULL,     -- see 006
    prior_accounts TEXT NOT NULL,       -- see 006
    sent_count INTEGER NOT NULL,
    last_sent_at BIGINT,
    -- When the e-mails of the last day went out (JSON list of ms): the resend limit.
    recent_sends TEXT NOT NULL DEFAULT '[]',
    patient_id TEXT,
    pair_id TEXT,
    closed_at BIGINT
);

CREATE INDEX invitations_status ON invitations (status);
CREATE UNIQUE INDEX invitations_patient ON invitations (patient_id);
