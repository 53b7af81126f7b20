-- 016 outbox: the pending rows in the order they leave, so that finding the next due posts
-- reads them in that order and stops at the batch's size (bridge/store/outbox.py `due`),
-- instead of sorting every due row. With thousands of first-contact notices waiting for
-- patients who have not joined yet, the sort and its per-row room check took seconds.
CREATE INDEX outbox_pending_order ON outbox (status, (COALESCE(accepted_at, created_at)), txn_id);
