-- Fabric schema v16 (SQLite): whether a batch has an item that waits for more than one
-- dependency. While no running batch has one (chains, trees), every dependent of a
-- completion waits for that completion alone, and the release of dependents skips counting
-- them per dependent. Batches written before this version count as having one.
ALTER TABLE batches ADD COLUMN multi INTEGER NOT NULL DEFAULT 1;
CREATE INDEX batches_multi ON batches (id) WHERE state = 'running' AND multi = 1;
