-- 002 audit: the hash-chained audit log, its sealed content and media, and signed checkpoints.
-- The chain rows hold metadata only; bodies and media are sealed (AES-256-GCM) in their own
-- tables so retention can delete them while every hash in the chain still verifies.

-- One row (id = 1): the head of the chain. Appenders lock it, so seq has no gaps or forks.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    head_hash BLOB                      -- NULL before the first entry (the genesis hash)
);

INSERT INTO audit_head (id, seq, head_hash) VALUES (1, 0, NULL);

CREATE TABLE audit_entries (
    seq BIGINT PRIMARY KEY,             -- 1, 2, 3, ... with no gaps
    v INTEGER NOT NULL,                 -- entry format version
    ts BIGINT NOT NULL,
    pair_id TEXT,                       -- NULL for practice-wide entries
    pair_prev TEXT,                     -- hex hash of the pair's previous entry
    actor TEXT NOT NULL,
    role TEXT,
    action TEXT NOT NULL,
    event_id TEXT,
    outcome TEXT NOT NULL,
    content_sha256 TEXT,                -- hex SHA-256 of the (sealed) content, if any
    details TEXT NOT NULL,              -- canonical JSON object, never message content
    prev_hash BLOB NOT NULL,
    entry_hash BLOB NOT NULL
);

CREATE INDEX audit_entries_pair ON audit_entries (pair_id, seq);
CREATE INDEX audit_entries_event ON audit_entries (event_id);

-- Sealed content of an entry; the seq and the entry's content hash are the sealing AAD.
CREATE TABLE audit_content (
    seq BIGINT PRIMARY KEY,
    ts BIGINT NOT NULL,                 -- copied from the entry, for retention
    key_id TEXT NOT NULL,
    sealed BLOB NOT NULL                -- Sealer blob (names its key id)
);

CREATE INDEX audit_content_ts ON audit_content (ts);

-- Sealed media bytes (voice, images, attachments), named by the SHA-256 of the plaintext.
CREATE TABLE audit_media (
    sha256 TEXT PRIMARY KEY,
    ts BIGINT NOT NULL,                 -- last time an entry referred to it, for retention
    size BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    sealed BLOB NOT NULL                -- Sealer blob (names its key id)
);

CREATE INDEX audit_media_ts ON audit_media (ts);

-- Signed heads of the chain: every N entries, on every export, and on demand.
CREATE TABLE audit_checkpoints (
    count BIGINT PRIMARY KEY,
    head_hash BLOB NOT NULL,
    ts BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    public_key BLOB NOT NULL,
    signature BLOB NOT NULL,
    reason TEXT NOT NULL                -- 'periodic', 'export', 'manual'
);
