-- 007 outbox: first-contact notices wait for their reader; posts leave per room in order.

-- The Matrix user a notice is meant for (welcome, consent, desk notices): it is sent only
-- once that member has joined and has a device, so the device gets the post's room key.
ALTER TABLE outbox ADD COLUMN await_member TEXT;

-- When the post's cause was accepted (an e-mail's SMTP acceptance, the event that caused a
-- notice); a room's posts leave in this order. NULL on rows from before: created_at.
ALTER TABLE outbox ADD COLUMN accepted_at BIGINT;

CREATE INDEX outbox_room_order ON outbox (room_id, status, created_at);
