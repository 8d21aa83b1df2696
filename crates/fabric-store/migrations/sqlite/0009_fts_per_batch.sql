-- Fabric schema v9 (SQLite): chunks enter the full-text index once per stored batch of
-- documents (one INSERT ... SELECT by the store's code) instead of one row at a time from a
-- trigger. FTS5 writes its pending terms out as a new segment whenever a savepoint opens, and
-- every statement that fired the trigger opened one, so a document of ten chunks left ten
-- tiny segments to merge. Removal still goes through the delete trigger.
DROP TRIGGER doc_chunks_ai;
