-- 005 sessions: scheduled live sessions (video or text), running video calls, and voice
-- messages queued by the command line for the running bridge to post.
-- Times are BIGINT ms since the epoch.

-- A scheduled session of a pair. Its reminder, start and end are rows in `timers`
-- (kind 'session.reminder' / 'session.start' / 'session.end'); `armed` is 0 while the
-- running bridge has not yet armed the triggers of a session added by the command line.
CREATE TABLE live_sessions (
    session_id TEXT PRIMARY KEY,        -- short, typed by the therapist to cancel
    pair_id TEXT NOT NULL REFERENCES pairs (pair_id),
    kind TEXT NOT NULL
        CHECK (kind IN ('video', 'text')),
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    meeting TEXT,                       -- Jitsi meeting name of a video session
    status TEXT NOT NULL
        CHECK (status IN ('scheduled', 'cancelled')),
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    cancelled_at BIGINT,
    armed INTEGER NOT NULL
        CHECK (armed IN (0, 1))
);

CREATE INDEX live_sessions_pair ON live_sessions (pair_id, starts_at);
CREATE INDEX live_sessions_unarmed ON live_sessions (armed);

-- The running `!video` call of a pair (one at most); deleted by `!video end`.
CREATE TABLE video_calls (
    pair_id TEXT PRIMARY KEY REFERENCES pairs (pair_id),
    meeting TEXT NOT NULL,
    started_by TEXT NOT NULL,
    started_at BIGINT NOT NULL
);

-- Voice messages converted by `confidant voice send`; the Ogg itself is in audit_media
-- (sealed, named by its SHA-256). The bridge uploads and posts pending ones.
CREATE TABLE voice_jobs (
    job_id TEXT PRIMARY KEY,
    pair_id TEXT NOT NULL REFERENCES pairs (pair_id),
    media_ref TEXT NOT NULL,            -- hex SHA-256 of the Ogg in audit_media
    duration_ms BIGINT NOT NULL,
    size BIGINT NOT NULL,
    waveform TEXT NOT NULL,             -- JSON list of 100 ints 0..1024
    actor TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'sent', 'failed')),
    done_at BIGINT,
    error TEXT
);

CREATE INDEX voice_jobs_status ON voice_jobs (status, created_at);
