-- edigw spool schema v9 (SQLite): small blobs (an upload, an ack, a
-- document's JSON; see spool.InlineMax) are kept in the spool, committed with
-- the record that refers to them, instead of as files: each file cost a
-- write, an fsync of its own and one of its directory.
--
-- A rowid table with an index on the hash, not a WITHOUT ROWID table keyed
-- by it: rows are appended in order, and only the small index entry lands
-- at a random place (a kilobyte row there split a page every few inserts).

CREATE TABLE inline_blobs (
    id      INTEGER PRIMARY KEY,
    sha256  BLOB NOT NULL UNIQUE, -- the 32 bytes
    content BLOB NOT NULL
);
