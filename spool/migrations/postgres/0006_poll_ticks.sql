-- edigw spool schema v6 (PostgreSQL): the schedule tick a run is for, so
-- that in a cluster each tick runs on one node only (a node whose clock or
-- cron fires a little later finds the tick taken).

ALTER TABLE poll_runs ADD COLUMN tick timestamptz;
CREATE UNIQUE INDEX poll_runs_tick ON poll_runs (partner, poll, tick) WHERE tick IS NOT NULL;
