-- Fabric schema v4 (SQLite): no per-shard pending index by default. It made every enqueue and
-- claim dirty one more index page per commit (fabric bench: enqueue_one 54k/s -> 36k/s, bulk
-- 274k/s -> 212k/s). A store whose claims go shard by shard (a scenario run) creates it on
-- open instead (SqliteOptions::shard_index).
DROP INDEX IF EXISTS jobs_shard_ready;
