-- Fabric schema v8 (SQLite): the documents of the ingestion layer and their full-text index.
-- The chunk text is stored once, in doc_chunks; doc_fts is an FTS5 external-content index
-- over it (rowid = chunk id), kept in step by the triggers on doc_chunks. Nothing here
-- touches the jobs table.
CREATE TABLE documents (
    id          INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    path        TEXT NOT NULL,
    doc_type    TEXT NOT NULL,
    title       TEXT NOT NULL,
    size        INTEGER NOT NULL,
    mtime       INTEGER NOT NULL,
    hash        TEXT NOT NULL,
    tags        TEXT NOT NULL DEFAULT '[]',
    meta        TEXT NOT NULL DEFAULT '{}',
    indexed_at  INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL,
    UNIQUE (source, path)
);

CREATE TABLE doc_tags (
    tag    TEXT NOT NULL,
    doc_id INTEGER NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    PRIMARY KEY (tag, doc_id)
) WITHOUT ROWID;
CREATE INDEX doc_tags_doc ON doc_tags (doc_id);

CREATE TABLE doc_chunks (
    id      INTEGER PRIMARY KEY,
    doc_id  INTEGER NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    ord     INTEGER NOT NULL,
    key     TEXT NOT NULL,
    heading TEXT NOT NULL,
    text    TEXT NOT NULL
);
CREATE INDEX doc_chunks_doc ON doc_chunks (doc_id, ord);

CREATE TABLE doc_links (
    doc_id INTEGER NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    target TEXT NOT NULL,
    kind   TEXT NOT NULL
);
CREATE INDEX doc_links_doc ON doc_links (doc_id);
CREATE INDEX doc_links_target ON doc_links (target);

CREATE VIRTUAL TABLE doc_fts USING fts5 (
    heading, text,
    content = 'doc_chunks', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);
-- A heading's words weigh twice a body's.
INSERT INTO doc_fts (doc_fts, rank) VALUES ('rank', 'bm25(2.0, 1.0)');

CREATE TRIGGER doc_chunks_ai AFTER INSERT ON doc_chunks BEGIN
    INSERT INTO doc_fts (rowid, heading, text) VALUES (new.id, new.heading, new.text);
END;
CREATE TRIGGER doc_chunks_ad AFTER DELETE ON doc_chunks BEGIN
    INSERT INTO doc_fts (doc_fts, rowid, heading, text)
    VALUES ('delete', old.id, old.heading, old.text);
END;
