-- edigw spool schema v1 (PostgreSQL); the same tables as SQLite's v1.
-- Times are timestamptz (microseconds, the precision the SQLite backend keeps
-- too); NULL means "none". IDs compare bytewise (COLLATE "C"), as Go sorts
-- them: keyset paging and "newest first" depend on it, whatever the
-- database's default collation. Blob refs are (sha256 hex, size); '' means
-- "none". JSON is json, not jsonb: it is returned byte for byte as stored.

CREATE TABLE files (
    id              text COLLATE "C" PRIMARY KEY,
    partner         text NOT NULL,
    channel         text NOT NULL,
    direction       text NOT NULL,
    name            text NOT NULL,
    remote_path     text NOT NULL,
    sha256          text NOT NULL,
    size            bigint NOT NULL,
    received_at     timestamptz NOT NULL,
    duplicate_of    text COLLATE "C" REFERENCES files (id),
    meta            json,
    state           text NOT NULL,
    retry_of        text NOT NULL DEFAULT '',
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text NOT NULL DEFAULT '',
    lease_owner     text NOT NULL DEFAULT '',
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

-- Claims: due work by stage.
CREATE INDEX files_due ON files (state, next_attempt_at);
CREATE INDEX files_retry_due ON files (retry_of, next_attempt_at) WHERE state = 'retrying';
-- Duplicate detection by content, and the console's lists.
CREATE INDEX files_partner_sha ON files (partner, sha256, received_at);
CREATE INDEX files_partner_received ON files (partner, received_at);
CREATE INDEX files_received ON files (received_at);

CREATE TABLE interchanges (
    id           text COLLATE "C" PRIMARY KEY,
    file_id      text COLLATE "C" NOT NULL REFERENCES files (id),
    seq          integer NOT NULL,
    partner      text NOT NULL,
    control      text NOT NULL,
    sender       text NOT NULL,
    receiver     text NOT NULL,
    version      text NOT NULL,
    state        text NOT NULL,
    duplicate_of text COLLATE "C" REFERENCES interchanges (id),
    received_at  timestamptz NOT NULL,
    ack_kind     text NOT NULL DEFAULT '',
    ack_status   text NOT NULL DEFAULT '',
    ack_control  text NOT NULL DEFAULT '',
    ack_sha256   text NOT NULL DEFAULT '',
    ack_size     bigint NOT NULL DEFAULT 0,
    ack_at       timestamptz,
    meta         json,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    UNIQUE (file_id, seq)
);

-- Duplicate detection by (partner, ISA13) within a window.
CREATE INDEX interchanges_partner_control ON interchanges (partner, control, received_at);

CREATE TABLE documents (
    id              text COLLATE "C" PRIMARY KEY,
    file_id         text COLLATE "C" NOT NULL REFERENCES files (id),
    interchange_id  text COLLATE "C" REFERENCES interchanges (id),
    seq             integer NOT NULL,
    partner         text NOT NULL,
    type            text NOT NULL,
    group_control   text NOT NULL,
    set_control     text NOT NULL,
    business_key    text NOT NULL,
    idempotency_key text NOT NULL,
    mapped_sha256   text NOT NULL DEFAULT '',
    mapped_size     bigint NOT NULL DEFAULT 0,
    resp_status     integer NOT NULL DEFAULT 0,
    resp_sha256     text NOT NULL DEFAULT '',
    resp_size       bigint NOT NULL DEFAULT 0,
    resp_at         timestamptz,
    meta            json,
    state           text NOT NULL,
    retry_of        text NOT NULL DEFAULT '',
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text NOT NULL DEFAULT '',
    lease_owner     text NOT NULL DEFAULT '',
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    UNIQUE (file_id, seq)
);

CREATE INDEX documents_due ON documents (state, next_attempt_at);
CREATE INDEX documents_retry_due ON documents (retry_of, next_attempt_at) WHERE state = 'retrying';
CREATE INDEX documents_interchange ON documents (interchange_id);
CREATE INDEX documents_partner_type ON documents (partner, type, created_at);
CREATE INDEX documents_business_key ON documents (business_key) WHERE business_key <> '';
CREATE INDEX documents_idempotency_key ON documents (idempotency_key) WHERE idempotency_key <> '';
CREATE INDEX documents_set_control ON documents (partner, set_control);

-- The append-only log. subject is a file, interchange or document id.
CREATE TABLE events (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject    text COLLATE "C" NOT NULL,
    at         timestamptz NOT NULL,
    actor      text NOT NULL,
    kind       text NOT NULL,
    from_state text NOT NULL DEFAULT '',
    to_state   text NOT NULL DEFAULT '',
    message    text NOT NULL DEFAULT '',
    detail     json
);

CREATE INDEX events_subject ON events (subject, seq);

CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'spool: events are append-only';
END
$$;

CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();

CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

CREATE TABLE counters (
    partner    text NOT NULL,
    name       text NOT NULL,
    value      bigint NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (partner, name)
);
