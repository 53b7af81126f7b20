-- 006 invitations: a patient invited by e-mail with a single-use registration token.
-- Times are BIGINT ms since the epoch.
--
-- Life of a row: 'pending' (token live on the homeserver, e-mail sent or to be sent),
-- then 'used' (the account appeared and its pair exists), 'unmatched' (the token was used
-- but the new account could not be told apart from another one: the operator matches it
-- by hand), 'revoked' or 'expired' (token deleted on the homeserver).
CREATE TABLE invitations (
    invitation_id TEXT PRIMARY KEY,     -- short, typed by the operator
    email TEXT NOT NULL,
    name TEXT,
    therapist_id TEXT NOT NULL,
    policy TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,         -- the registration token (the invitation code)
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'used', 'unmatched', 'revoked', 'expired')),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- Accounts created at or after this time may be the one registered with the token:
    -- the last time the token was seen unused (the homeserver keeps no link between a
    -- token and the account registered with it).
    unused_seen_at BIGINT NOT NULL,
    -- Accounts that already existed in the second the token was made (JSON list): the
    -- homeserver's creation times are whole seconds, so these cannot be told apart by time.
    prior_accounts TEXT NOT NULL,
    sent_count INTEGER NOT NULL,
    last_sent_at BIGINT,
    patient_id TEXT,
    pair_id TEXT,
    closed_at BIGINT
);

CREATE INDEX invitations_status ON invitations (status);
CREATE UNIQUE INDEX invitations_patient ON invitations (patient_id);
