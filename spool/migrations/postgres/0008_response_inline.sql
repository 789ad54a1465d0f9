-- edigw spool schema v8 (PostgreSQL): a small ERP response body is kept in
-- the document's row, committed with the delivery, instead of as a blob.

ALTER TABLE documents ADD COLUMN resp_inline bytea;
