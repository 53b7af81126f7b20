-- 008 pending events: Megolm events the bot could not decrypt yet, kept until their room key
-- arrives or the grace period ends. Written before the sync token moves past the event, so
-- a restart or a standby's takeover finds every event still waiting. Times are BIGINT ms.
--
-- source is the event as the homeserver sent it, reduced to the Megolm ciphertext and its
-- routing fields (type, room id, sender, event id, origin time): no plaintext is ever here.
CREATE TABLE pending_events (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    origin_ts BIGINT NOT NULL,
    source TEXT NOT NULL,               -- JSON
    -- When an instance first saw the event (wall clock): the grace counts from here, so a
    -- restart does not start it again.
    first_seen_at BIGINT NOT NULL
);

CREATE INDEX pending_events_first_seen ON pending_events (first_seen_at);
