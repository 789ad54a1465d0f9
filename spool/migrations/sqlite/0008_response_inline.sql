-- edigw spool schema v8 (SQLite): a small ERP response body is kept in the
-- document's row, committed with the delivery, instead of as a blob (a file
-- written and fsync'd per delivery).

ALTER TABLE documents ADD COLUMN resp_inline BLOB;
