-- edigw spool schema v7 (PostgreSQL): find documents by a state they went
-- through (DocumentFilter.WasIn), e.g. rejected sets that ended in done.

CREATE INDEX events_to_state ON events (to_state, subject);
