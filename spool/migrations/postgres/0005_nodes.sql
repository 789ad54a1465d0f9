-- edigw spool schema v5 (PostgreSQL): gateway nodes and their heartbeats.

CREATE TABLE nodes (
    id         text COLLATE "C" PRIMARY KEY,
    addr       text NOT NULL,
    version    text NOT NULL,
    started_at timestamptz NOT NULL,
    seen_at    timestamptz NOT NULL,
    in_flight  integer NOT NULL
);
