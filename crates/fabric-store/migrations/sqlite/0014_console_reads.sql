-- Fabric schema v14 (SQLite): what a console over millions of jobs lists without scanning them.
-- The terminal states an operator lists, newest first. A job enters or leaves them once, so
-- the claim and completion paths never touch these (succeeded, the common end, has none: it
-- is most of the table, which its primary key already walks newest first).
CREATE INDEX IF NOT EXISTS jobs_quarantined ON jobs (id) WHERE state = 'quarantined';
CREATE INDEX IF NOT EXISTS jobs_cancelled ON jobs (id) WHERE state = 'cancelled';
-- Jobs that carry an error, with it, for the search over error text: it reads the failures,
-- not the whole table. A completion without an error leaves it alone.
CREATE INDEX IF NOT EXISTS jobs_errors ON jobs (id, last_error) WHERE last_error IS NOT NULL;
