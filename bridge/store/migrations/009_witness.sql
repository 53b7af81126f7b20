-- 009 witness: the self-check of the bot's own posts. One row per post the witness device
-- (a second device of the bot) is asked to decrypt, and what came of it. Times are BIGINT ms.
--
-- While a check waits, the post's content stays sealed in its outbox row (it is not dropped
-- at send), so an unreadable post can be re-posted; it goes once the post was read or
-- re-posted. No content is ever in this table.
CREATE TABLE witness_checks (
    txn_id TEXT PRIMARY KEY,            -- the outbox row of the post
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    -- The witness device the post's room key was meant for: only that device can tell (a
    -- standby that took over has a witness of its own, which never had this key).
    witness_device TEXT NOT NULL,
    sent_at BIGINT NOT NULL,
    -- waiting: not read yet; readable: the witness decrypted it; reposted: unreadable, sent
    -- again as repost_txn_id; unreadable: unreadable and not repaired (a repost itself, or
    -- its content was gone); unchecked: the witness could not be asked (not up, or the
    -- post's key was never meant for it).
    state TEXT NOT NULL,
    checked_at BIGINT,
    repost_txn_id TEXT
);

CREATE INDEX witness_checks_state ON witness_checks (state, checked_at);
CREATE INDEX witness_checks_repost ON witness_checks (repost_txn_id);
