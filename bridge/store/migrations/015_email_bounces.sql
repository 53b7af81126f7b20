-- 015 email bounces: mail to a patient that came back undelivered (a delivery status
-- notification, RFC 3464) is tied to its row and marked.
--
-- Each mail leaves with its own return path, `bounce+TOKEN@` the inbound domain
-- (bridge/email/inbox.py: bounce_address), where TOKEN is `bounce_token`: 128 random bits
-- given to the row when it is first sent, and kept so that a mail sent again after a crash
-- has the same return path. A report is believed only for the row its return path names,
-- never for what its body says, so nobody without the token can mark a mail bounced. The
-- token names no one and says nothing of the mail; it is kept in clear, like the pair
-- tokens of the inbound addresses (whoever reads the database could write to those too).
--
-- `delivery` is what the reports said, never content: NULL (none came), 'delayed' (a
-- server is still trying) or 'bounced' (it gave up; final, a later delay does not undo
-- it); `delivery_status` the report's RFC 3463 status code ("5.1.1"), `delivery_at` when
-- the report was taken. The report itself is sealed in the audit ("email.bounced",
-- "email.delayed"), as the mail it answers is.
ALTER TABLE outbound_emails ADD COLUMN bounce_token TEXT;
ALTER TABLE outbound_emails ADD COLUMN delivery TEXT
    CHECK (delivery IS NULL OR delivery IN ('delayed', 'bounced'));
ALTER TABLE outbound_emails ADD COLUMN delivery_status TEXT;
ALTER TABLE outbound_emails ADD COLUMN delivery_at BIGINT;

CREATE UNIQUE INDEX outbound_emails_bounce_token ON outbound_emails (bounce_token);
