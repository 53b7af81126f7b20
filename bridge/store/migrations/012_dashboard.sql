-- 012 dashboard: single-use sign-in links from a therapist's desk room, dashboard sessions,
-- and the indexes the dashboard's filtered, paged lists read. Times are BIGINT ms.
--
-- Only SHA-256 digests of link tokens and session cookies are kept: a copy of the database
-- opens no session. A link is used once (used_at) and lives a few minutes; a session is one
-- row, so "sign out everywhere" is one DELETE of the viewer's rows.
CREATE TABLE dashboard_links (
    digest TEXT PRIMARY KEY,            -- hex SHA-256 of the link's token
    therapist_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

CREATE INDEX dashboard_links_expires ON dashboard_links (expires_at);

CREATE TABLE dashboard_sessions (
    digest TEXT PRIMARY KEY,            -- hex SHA-256 of the session cookie
    viewer TEXT NOT NULL,               -- 'admin', or the therapist's Matrix user id
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX dashboard_sessions_viewer ON dashboard_sessions (viewer);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);

-- Filters by policy and by state, each with the label order the pages list in.
CREATE INDEX pairs_policy ON pairs (policy, status, label);
CREATE INDEX pairs_status_label ON pairs (status, label);
