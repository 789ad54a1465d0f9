-- edigw spool schema v2 (PostgreSQL): scheduled polls (see spool.Polls).
-- Times are timestamptz; NULL means "none".

-- One row per run of a poll, named by (partner, poll).
CREATE TABLE poll_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner     text NOT NULL,
    poll        text NOT NULL,
    owner       text NOT NULL,
    "trigger"   text NOT NULL,
    status      text NOT NULL,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    lease_until timestamptz NOT NULL,
    seen        integer NOT NULL DEFAULT 0,
    fetched     integer NOT NULL DEFAULT 0,
    skipped     integer NOT NULL DEFAULT 0,
    failed      integer NOT NULL DEFAULT 0,
    errors      text[] NOT NULL DEFAULT '{}'
);

-- A poll's history, newest first.
CREATE INDEX poll_runs_poll ON poll_runs (partner, poll, id);

-- Who runs each poll now: one row per poll ever run. Unlike SQLite's, the
-- row is never deleted: BeginRun locks it (SELECT … FOR UPDATE) to decide
-- who wins, and a deleted row would let a waiting BeginRun and a new one
-- both pass. run_id is NULL while nobody runs the poll; otherwise the row
-- points at the run, even after its lease expired, until another run takes
-- it over or the run finishes.
CREATE TABLE poll_leases (
    partner     text NOT NULL,
    poll        text NOT NULL,
    run_id      bigint REFERENCES poll_runs (id),
    owner       text NOT NULL DEFAULT '',
    lease_until timestamptz,
    PRIMARY KEY (partner, poll)
);

CREATE INDEX poll_leases_run ON poll_leases (run_id);

-- What each poll remembers of its remote folder. file_id is not a foreign
-- key: forgetting or purging spooled files must not depend on this memory.
CREATE TABLE poll_files (
    partner    text NOT NULL,
    poll       text NOT NULL,
    name       text NOT NULL,
    size       bigint NOT NULL,
    mod_time   timestamptz,
    since      timestamptz,
    file_id    text COLLATE "C",
    fetched_at timestamptz,
    done       boolean NOT NULL DEFAULT false,
    PRIMARY KEY (partner, poll, name)
);
