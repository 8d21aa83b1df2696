-- Fabric schema v9 (SQLite): the full-text index written in large runs.
-- Chunks enter the index once per stored batch of documents (one INSERT ... SELECT by the
-- store's code) instead of one row at a time from a trigger: FTS5 writes its pending terms out
-- as a new segment whenever a savepoint opens, and every statement that fired the trigger
-- opened one, so a document of ten chunks left ten tiny segments to merge. Removal still goes
-- through the delete trigger.
DROP TRIGGER doc_chunks_ai;
-- Up to 16 MiB of pending terms before a segment is written (default 1 MiB), and merges only
-- once 16 segments of a level exist (default 4): cold ingest of mixed text went from 21 to
-- 30 MB/s (fabric bench ingest, docs/benchmarks.md); searches read a few more segments.
INSERT INTO doc_fts (doc_fts, rank) VALUES ('hashsize', 16777216);
INSERT INTO doc_fts (doc_fts, rank) VALUES ('automerge', 16);
