-- edigw spool schema v4 (PostgreSQL): the business numbers a document refers
-- to (the PO numbers of a ship notice's orders, of an invoice, ...), so a
-- search by number finds every document about it.

CREATE TABLE document_refs (
    document_id text COLLATE "C" NOT NULL REFERENCES documents (id),
    ref         text NOT NULL,
    PRIMARY KEY (ref, document_id)
);
