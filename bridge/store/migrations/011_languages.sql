-- 011 languages: the language each person reads the bot's texts in, and the one an
-- invitation was made with. No row: the practice's (practice.language).
--
-- A patient's language is hers, whichever pair she is in: the pair room shows her texts in it;
-- a therapist's (or supervisor's) decides the desk room's. Kept apart from pairs and
-- therapists so that neither table's shape depends on it.
CREATE TABLE languages (
    user_id TEXT PRIMARY KEY,           -- Matrix user id
    language TEXT NOT NULL,             -- en, de, es (bridge/core/language.py)
    set_at BIGINT NOT NULL
);

-- The language `invite --language` chose: the invitation e-mail's, and the patient's once
-- her account appears (until she picks another with !language).
CREATE TABLE invitation_languages (
    invitation_id TEXT PRIMARY KEY,
    language TEXT NOT NULL
);
