-- edigw spool schema v5 (SQLite): gateway nodes and their heartbeats.

CREATE TABLE nodes (
    id         TEXT PRIMARY KEY,
    addr       TEXT NOT NULL,
    version    TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL,
    in_flight  INTEGER NOT NULL
) STRICT;
