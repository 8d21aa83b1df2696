-- Fabric schema v7 (PostgreSQL): the documents of the ingestion layer and their full-text
-- index: a generated tsvector per chunk (heading words weigh 'A', body words 'D') under a GIN
-- index. The 'simple' configuration (no stemming, no stop words) matches what SQLite's FTS5
-- unicode61 tokenizer finds. Nothing here touches the jobs table.
CREATE TABLE documents (
    id          BIGSERIAL PRIMARY KEY,
    source      TEXT NOT NULL,
    path        TEXT NOT NULL,
    doc_type    TEXT NOT NULL,
    title       TEXT NOT NULL,
    size        BIGINT NOT NULL,
    mtime       BIGINT NOT NULL,
    hash        TEXT NOT NULL,
    tags        TEXT[] NOT NULL DEFAULT '{}',
    meta        JSONB NOT NULL DEFAULT '{}',
    indexed_at  BIGINT NOT NULL,
    chunk_count INTEGER NOT NULL,
    UNIQUE (source, path)
);
CREATE INDEX documents_tags ON documents USING GIN (tags);

CREATE TABLE doc_chunks (
    id      BIGSERIAL PRIMARY KEY,
    doc_id  BIGINT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    ord     INTEGER NOT NULL,
    key     TEXT NOT NULL,
    heading TEXT NOT NULL,
    text    TEXT NOT NULL,
    tsv     tsvector GENERATED ALWAYS AS (
                setweight(to_tsvector('simple', heading), 'A')
                || setweight(to_tsvector('simple', text), 'D')) STORED
);
CREATE INDEX doc_chunks_doc ON doc_chunks (doc_id, ord);
CREATE INDEX doc_chunks_tsv ON doc_chunks USING GIN (tsv);

CREATE TABLE doc_links (
    id     BIGSERIAL PRIMARY KEY,
    doc_id BIGINT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    target TEXT NOT NULL,
    kind   TEXT NOT NULL
);
CREATE INDEX doc_links_doc ON doc_links (doc_id);
CREATE INDEX doc_links_target ON doc_links (target);
