-- edigw spool schema v3 (PostgreSQL): the audit log (see spool.Audit).

CREATE TABLE audit (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL,
    actor   text NOT NULL,
    role    text NOT NULL,
    action  text NOT NULL,
    target  text NOT NULL,
    reason  text NOT NULL,
    outcome text NOT NULL,
    detail  json
);

CREATE INDEX audit_target ON audit (target, id);
