-- edigw spool schema v4 (SQLite): the business numbers a document refers to
-- (the PO numbers of a ship notice's orders, of an invoice, ...), so a
-- search by number finds every document about it.

CREATE TABLE document_refs (
    document_id TEXT NOT NULL REFERENCES documents (id),
    ref         TEXT NOT NULL,
    PRIMARY KEY (ref, document_id)
) STRICT, WITHOUT ROWID;
