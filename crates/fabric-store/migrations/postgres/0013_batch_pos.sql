-- Fabric schema v13 (PostgreSQL): the position of each batch item in its batch file. Items
-- are stored in run order (the items that become ready together sit together); `batch
-- show` lists them in file order by this position.
ALTER TABLE jobs ADD COLUMN batch_pos INTEGER;
