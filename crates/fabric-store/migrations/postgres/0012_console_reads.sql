-- Fabric schema v12 (PostgreSQL): what a console over millions of jobs lists without scanning
-- them: the terminal states an operator lists, newest first (a job enters or leaves them
-- once), and the jobs that carry an error, for the search over error text.
CREATE INDEX IF NOT EXISTS jobs_quarantined ON jobs (id) WHERE state = 'quarantined';
CREATE INDEX IF NOT EXISTS jobs_cancelled ON jobs (id) WHERE state = 'cancelled';
CREATE INDEX IF NOT EXISTS jobs_errors ON jobs (id) WHERE last_error IS NOT NULL;
