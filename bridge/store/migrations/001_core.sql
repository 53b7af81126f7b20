-- 001 core: pairs, therapists, the outbox, sync state and timers.
-- Times are BIGINT milliseconds since the epoch (UTC); JSON is TEXT.

CREATE TABLE pairs (
    pair_id TEXT PRIMARY KEY,           -- random, never shown
    label TEXT NOT NULL UNIQUE,         -- short display label, e.g. in room names
    patient_id TEXT NOT NULL,           -- Matrix user id
    therapist_id TEXT NOT NULL,         -- Matrix user id
    room_id TEXT UNIQUE,                -- NULL while provisioning
    status TEXT NOT NULL
        CHECK (status IN ('provisioning', 'active', 'removed')),
    policy TEXT NOT NULL,               -- name of an SLA policy in the config
    patient_email TEXT,
    email_token TEXT NOT NULL UNIQUE,   -- local part pair-TOKEN@domain
    consent_state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    removed_at BIGINT
);

-- At most one live pair per patient and therapist.
CREATE UNIQUE INDEX pairs_live_users ON pairs (patient_id, therapist_id)
    WHERE status <> 'removed';
CREATE INDEX pairs_therapist ON pairs (therapist_id, status);

CREATE TABLE therapists (
    user_id TEXT PRIMARY KEY,
    desk_room_id TEXT UNIQUE,
    email TEXT,
    supervisor_id TEXT,
    away_until BIGINT,
    cover_id TEXT,
    created_at BIGINT NOT NULL
);

-- Everything Confidant posts to Matrix, written before it is sent.
-- content is the event content as JSON sealed (encrypted) by the caller.
CREATE TABLE outbox (
    txn_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    content BLOB,                       -- NULL once sent
    pair_id TEXT REFERENCES pairs (pair_id),
    kind TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts INTEGER NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,                    -- an error class or code, never content
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    event_id TEXT
);

CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

CREATE TABLE kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE processed_events (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    seen_at BIGINT NOT NULL
);

CREATE INDEX processed_events_seen ON processed_events (seen_at);

CREATE TABLE timers (
    timer_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    pair_id TEXT REFERENCES pairs (pair_id),
    due_at BIGINT NOT NULL,
    payload TEXT NOT NULL,              -- JSON
    fired_at BIGINT                     -- set once, when the timer fired
);

CREATE INDEX timers_pending ON timers (fired_at, due_at);
