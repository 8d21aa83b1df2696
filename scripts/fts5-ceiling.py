#!/usr/bin/env python3
"""The single-writer FTS5 ceiling for a corpus: how fast SQLite's FTS5 alone indexes the text
of the files under DIR, with nothing else running (no parsing beyond stripping HTML tags, no
job queue, no documents table), in transactions of 256 files as Fabric's ingest jobs write
them, chunks of 2,000 characters. Prints MB/s of file bytes, once with Fabric's index settings
(migrations 0008 and 0009) and once with FTS5's defaults.

    scripts/fts5-ceiling.py DIR

Uses Python's own sqlite3 module (standard library only); the databases go to a temporary
directory that is removed afterwards.
"""
import glob
import os
import re
import sqlite3
import sys
import tempfile
import time

FABRIC = (
    "CREATE VIRTUAL TABLE f USING fts5(heading, text, "
    "tokenize = 'unicode61 remove_diacritics 2')",
    [
        "INSERT INTO f (f, rank) VALUES ('hashsize', 16777216)",
        "INSERT INTO f (f, rank) VALUES ('automerge', 16)",
    ],
)
DEFAULTS = ("CREATE VIRTUAL TABLE f USING fts5(heading, text)", [])


def corpus(root):
    files = sorted(p for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
                   if os.path.isfile(p))
    out = []
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        if path.endswith((".html", ".htm")):
            text = re.sub(r"<[^>]+>", " ", text)
        out.append((os.path.getsize(path), [text[i:i + 2000] for i in range(0, len(text), 2000)]))
    return out


def run(name, schema, texts, tmp):
    create, settings = schema
    conn = sqlite3.connect(os.path.join(tmp, name + ".db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -65536")
    conn.execute(create)
    for s in settings:
        conn.execute(s)
    total = sum(size for size, _ in texts)
    start, rowid = time.time(), 0
    for i in range(0, len(texts), 256):
        rows = []
        for _, chunks in texts[i:i + 256]:
            for chunk in chunks:
                rowid += 1
                rows.append((rowid, "", chunk))
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO f (rowid, heading, text) VALUES (?, ?, ?)", rows)
        conn.execute("COMMIT")
    took = time.time() - start
    conn.close()
    print(f"{name}: {total / took / 1e6:.1f} MB/s ({total / 1e6:.1f} MB of files, "
          f"{len(texts)} files, {rowid} chunks, {took:.1f} s)", flush=True)


def main():
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit("usage: fts5-ceiling.py DIR (a directory of text files)")
    texts = corpus(sys.argv[1])
    if not texts:
        sys.exit(f"no files under {sys.argv[1]}")
    with tempfile.TemporaryDirectory() as tmp:
        run("fabric settings", FABRIC, texts, tmp)
        run("fts5 defaults", DEFAULTS, texts, tmp)


if __name__ == "__main__":
    main()
