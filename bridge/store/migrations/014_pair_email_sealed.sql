-- 014 a pair's patient e-mail address sealed at rest, as 013 did for invitations: kept
-- sealed (bridge/sealing.py, the audit content keys; associated data: pair id and field),
-- never in clear.
--
-- SQL cannot seal, so the addresses of 001's `patient_email` move to `pairs_email_clear`
-- here and the column is dropped; Python seals them into `patient_email_sealed` on the next
-- start, before anything reads pairs (bridge/store/pairs.py: seal_clear_rows, called from
-- bridge/parts.py open_parts), and drops `pairs_email_clear` in the same transaction.
-- SQLite's secure_delete (on for every connection) overwrites the freed bytes, so the clear
-- addresses leave the file too; on PostgreSQL a dropped column stays in the old row
-- versions, which open_parts then rewrites away (`VACUUM FULL pairs`, pairs.reclaim_space).
-- The table is rebuilt in neither engine: other tables' foreign keys name pairs.
--
-- The address is found by `patient_email_sha256`, the SHA-256 (hex) of the lower-cased
-- address (languages.of_address matches a recipient case-insensitively). It is unkeyed:
-- the sealer derives no MAC key, and a digest under one of its keys would stop matching
-- when the keys rotate. An unkeyed digest lets whoever holds the database confirm an
-- address they guess, never read one; email_consent.address_sha256 and an e-mail pair's
-- patient id (bridge/core/email_out.py, its first 128 bits) already hold this same digest,
-- so the column reveals nothing more.
CREATE TABLE pairs_email_clear (
    pair_id TEXT PRIMARY KEY REFERENCES pairs (pair_id),
    patient_email TEXT NOT NULL
);

INSERT INTO pairs_email_clear (pair_id, patient_email)
    SELECT pair_id, patient_email FROM pairs WHERE patient_email IS NOT NULL;

ALTER TABLE pairs DROP COLUMN patient_email;
ALTER TABLE pairs ADD COLUMN patient_email_sealed BLOB;    -- Sealer blob, NULL: no address
ALTER TABLE pairs ADD COLUMN patient_email_sha256 TEXT;    -- hex SHA-256, lower-cased

CREATE INDEX pairs_patient_email ON pairs (patient_email_sha256);
