-- edigw spool schema v1 (SQLite).
-- Times are INTEGER microseconds since the Unix epoch, UTC; 0 means "none".
-- Blob refs are (sha256 hex, size); '' means "none".

CREATE TABLE files (
    id              TEXT PRIMARY KEY,
    partner         TEXT NOT NULL,
    channel         TEXT NOT NULL,
    direction       TEXT NOT NULL,
    name            TEXT NOT NULL,
    remote_path     TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    size            INTEGER NOT NULL,
    received_at     INTEGER NOT NULL,
    duplicate_of    TEXT REFERENCES files (id),
    meta            TEXT,
    state           TEXT NOT NULL,
    retry_of        TEXT NOT NULL DEFAULT '',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT NOT NULL DEFAULT '',
    lease_owner     TEXT NOT NULL DEFAULT '',
    lease_until     INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;

-- Claims: due work by stage.
CREATE INDEX files_due ON files (state, next_attempt_at);
CREATE INDEX files_retry_due ON files (retry_of, next_attempt_at) WHERE state = 'retrying';
-- Duplicate detection by content, and the console's lists.
CREATE INDEX files_partner_sha ON files (partner, sha256, received_at);
CREATE INDEX files_partner_received ON files (partner, received_at);
CREATE INDEX files_received ON files (received_at);

CREATE TABLE interchanges (
    id           TEXT PRIMARY KEY,
    file_id      TEXT NOT NULL REFERENCES files (id),
    seq          INTEGER NOT NULL,
    partner      TEXT NOT NULL,
    control      TEXT NOT NULL,
    sender       TEXT NOT NULL,
    receiver     TEXT NOT NULL,
    version      TEXT NOT NULL,
    state        TEXT NOT NULL,
    duplicate_of TEXT REFERENCES interchanges (id),
    received_at  INTEGER NOT NULL,
    ack_kind     TEXT NOT NULL DEFAULT '',
    ack_status   TEXT NOT NULL DEFAULT '',
    ack_control  TEXT NOT NULL DEFAULT '',
    ack_sha256   TEXT NOT NULL DEFAULT '',
    ack_size     INTEGER NOT NULL DEFAULT 0,
    ack_at       INTEGER NOT NULL DEFAULT 0,
    meta         TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (file_id, seq)
) STRICT;

-- Duplicate detection by (partner, ISA13) within a window.
CREATE INDEX interchanges_partner_control ON interchanges (partner, control, received_at);

CREATE TABLE documents (
    id              TEXT PRIMARY KEY,
    file_id         TEXT NOT NULL REFERENCES files (id),
    interchange_id  TEXT REFERENCES interchanges (id),
    seq             INTEGER NOT NULL,
    partner         TEXT NOT NULL,
    type            TEXT NOT NULL,
    group_control   TEXT NOT NULL,
    set_control     TEXT NOT NULL,
    business_key    TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    mapped_sha256   TEXT NOT NULL DEFAULT '',
    mapped_size     INTEGER NOT NULL DEFAULT 0,
    resp_status     INTEGER NOT NULL DEFAULT 0,
    resp_sha256     TEXT NOT NULL DEFAULT '',
    resp_size       INTEGER NOT NULL DEFAULT 0,
    resp_at         INTEGER NOT NULL DEFAULT 0,
    meta            TEXT,
    state           TEXT NOT NULL,
    retry_of        TEXT NOT NULL DEFAULT '',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT NOT NULL DEFAULT '',
    lease_owner     TEXT NOT NULL DEFAULT '',
    lease_until     INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (file_id, seq)
) STRICT;

CREATE INDEX documents_due ON documents (state, next_attempt_at);
CREATE INDEX documents_retry_due ON documents (retry_of, next_attempt_at) WHERE state = 'retrying';
CREATE INDEX documents_interchange ON documents (interchange_id);
CREATE INDEX documents_partner_type ON documents (partner, type, created_at);
CREATE INDEX documents_business_key ON documents (business_key) WHERE business_key <> '';
CREATE INDEX documents_idempotency_key ON documents (idempotency_key) WHERE idempotency_key <> '';
CREATE INDEX documents_set_control ON documents (partner, set_control);

-- The append-only log. subject is a file, interchange or document id.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    subject    TEXT NOT NULL,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    from_state TEXT NOT NULL DEFAULT '',
    to_state   TEXT NOT NULL DEFAULT '',
    message    TEXT NOT NULL DEFAULT '',
    detail     TEXT
) STRICT;

CREATE INDEX events_subject ON events (subject, seq);

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'spool: events are append-only');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'spool: events are append-only');
END;

CREATE TABLE counters (
    partner    TEXT NOT NULL,
    name       TEXT NOT NULL,
    value      INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (partner, name)
) STRICT;
