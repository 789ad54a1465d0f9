-- edigw spool schema v9 (SQLite): small blobs (an upload, an ack, a
-- document's JSON; see spool.InlineMax) are kept in the spool, committed with
-- the record that refers to them, instead of as files: each file cost a
-- write, an fsync of its own and one of its directory.

CREATE TABLE inline_blobs (
    sha256  TEXT PRIMARY KEY,
    content BLOB NOT NULL
) WITHOUT ROWID;
