-- 003 sla: response-time clocks, open and closed (closed ones feed the report).
-- A clock opens on a patient's first unanswered message and closes on the therapist's
-- reply; clock_id is derived from the pair and the opening event, so replaying the
-- opening writes the same row. Therapists' absences live in therapists.away_until /
-- cover_id (001). Times are BIGINT ms since the epoch; durations are BIGINT ms.

CREATE TABLE sla_clocks (
    clock_id TEXT PRIMARY KEY,
    pair_id TEXT NOT NULL REFERENCES pairs (pair_id),
    therapist_id TEXT NOT NULL,         -- the pair's therapist when the clock opened
    policy TEXT NOT NULL,               -- name of the SLA policy in the config
    state TEXT NOT NULL
        CHECK (state IN ('open', 'closed', 'cancelled')),
    opened_at BIGINT NOT NULL,
    first_event_id TEXT NOT NULL,       -- Matrix event id of the opening message
    first_kind TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    heads_up_at BIGINT,
    escalate_at BIGINT,
    steps_done TEXT NOT NULL,           -- JSON list: heads_up, due, escalation, breached...
    paused_since BIGINT,                -- set while paused (away without cover)
    resume_at BIGINT,
    paused_ms BIGINT NOT NULL,          -- finished pauses, in the window's clock
    closed_at BIGINT,
    closed_by TEXT,
    closing_event_id TEXT,
    response_working_ms BIGINT,
    response_calendar_ms BIGINT,
    met INTEGER                         -- 1 replied by due, 0 late, NULL not replied
        CHECK (met IN (0, 1))
);

-- At most one open clock per pair.
CREATE UNIQUE INDEX sla_clocks_open_pair ON sla_clocks (pair_id) WHERE state = 'open';
CREATE INDEX sla_clocks_due ON sla_clocks (state, due_at);
CREATE INDEX sla_clocks_therapist ON sla_clocks (therapist_id, state, due_at);
CREATE INDEX sla_clocks_closed ON sla_clocks (closed_at);
