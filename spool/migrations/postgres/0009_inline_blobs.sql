-- edigw spool schema v9 (PostgreSQL): small blobs (an upload, an ack, a
-- document's JSON; see spool.InlineMax) are kept in the spool, committed with
-- the record that refers to them.

CREATE TABLE inline_blobs (
    sha256  bytea PRIMARY KEY, -- the 32 bytes
    content bytea NOT NULL
);
