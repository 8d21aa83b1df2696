-- Fabric schema v15 (SQLite): the position of each batch item in its batch file. Items are
-- stored in run order (the items that become ready together sit together, so a drain's
-- writes share pages); `batch show` lists them in file order by this position.
ALTER TABLE jobs ADD COLUMN batch_pos INTEGER;
