-- edigw spool schema v3 (SQLite): the audit log (see spool.Audit).

CREATE TABLE audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    role    TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    reason  TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail  TEXT
) STRICT;

CREATE INDEX audit_target ON audit (target, id);
