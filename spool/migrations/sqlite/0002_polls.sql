-- edigw spool schema v2 (SQLite): scheduled polls (see spool.Polls).
-- Times are INTEGER microseconds since the Unix epoch, UTC; NULL or 0 means "none".

-- One row per run of a poll, named by (partner, poll).
CREATE TABLE poll_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    partner     TEXT NOT NULL,
    poll        TEXT NOT NULL,
    owner       TEXT NOT NULL,
    "trigger"   TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    lease_until INTEGER NOT NULL,
    seen        INTEGER NOT NULL DEFAULT 0,
    fetched     INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    errors      TEXT NOT NULL DEFAULT '[]' -- JSON array of strings
) STRICT;

-- A poll's history, newest first.
CREATE INDEX poll_runs_poll ON poll_runs (partner, poll, id);

-- Who runs each poll now: at most one row per poll. The row stays after the
-- lease expires until another run takes it over or the run finishes.
CREATE TABLE poll_leases (
    partner     TEXT NOT NULL,
    poll        TEXT NOT NULL,
    run_id      INTEGER NOT NULL REFERENCES poll_runs (id),
    owner       TEXT NOT NULL,
    lease_until INTEGER NOT NULL,
    PRIMARY KEY (partner, poll)
) STRICT;

-- What each poll remembers of its remote folder. file_id is not a foreign
-- key: forgetting or purging spooled files must not depend on this memory.
CREATE TABLE poll_files (
    partner    TEXT NOT NULL,
    poll       TEXT NOT NULL,
    name       TEXT NOT NULL,
    size       INTEGER NOT NULL,
    mod_time   INTEGER NOT NULL,
    since      INTEGER NOT NULL,
    file_id    TEXT,
    fetched_at INTEGER,
    done       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (partner, poll, name)
) STRICT;
