//! `fabric docs search|show|stats` through the binary, over documents put into the home's
//! store with `fabric_store` (there is no ingestion yet to put them).

use std::collections::BTreeMap;

use fabric_core::doc::{Chunk, DocLink, DocType, NewDocument};
use fabric_store::{sqlite::SqliteOptions, DocStore, SqliteStore};

use crate::Home;

fn doc(path: &str, text: &str, tags: &[&str], links: &[&str]) -> NewDocument {
    NewDocument {
        source: "vault".into(),
        path: path.into(),
        doc_type: DocType::Markdown,
        title: path.trim_end_matches(".md").into(),
        size: text.len() as u64,
        mtime: 1_800_000_000_000,
        hash: format!("hash-of-{path}"),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        meta: BTreeMap::new(),
        links: links
            .iter()
            .map(|t| DocLink {
                target: t.to_string(),
                kind: "wikilink".into(),
            })
            .collect(),
        chunks: vec![Chunk {
            key: format!("{path}#0"),
            ord: 0,
            heading: "Intro".into(),
            text: text.into(),
        }],
    }
}

/// Puts the documents into the home's store, as the ingest handlers will.
fn put(h: &Home, docs: Vec<NewDocument>) -> Vec<i64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(h.path().join("queue.db"), SqliteOptions::default()).unwrap();
        let mut ids = Vec::new();
        for d in docs {
            ids.push(store.put_document(d, 1).await.unwrap().id);
        }
        ids
    })
}

#[test]
fn docs_search_show_and_stats_through_the_binary() {
    let h = Home::new();
    // The home and its store exist once any command ran.
    h.expect(0, &["db", "check"]);
    let ids = put(
        &h,
        vec![
            doc(
                "Setup.md",
                "install the narwhal toolkit first",
                &["howto"],
                &[],
            ),
            doc("Notes.md", "a narwhal appears; see setup", &[], &["Setup"]),
        ],
    );

    let hits = h.json(&["docs", "search", "narwhal toolkit"]);
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["path"], "Setup.md");
    assert_eq!(hits[0]["source"], "vault");
    assert!(
        hits[0]["snippet"].as_str().unwrap().contains("[narwhal]"),
        "{hits:?}"
    );

    let both = h.json(&["docs", "search", "narwhal", "--limit", "5"]);
    assert_eq!(both.as_array().unwrap().len(), 2);
    let tagged = h.json(&["docs", "search", "narwhal", "--tag", "howto"]);
    assert_eq!(tagged.as_array().unwrap().len(), 1);
    let other = h.json(&["docs", "search", "narwhal", "--source", "mail"]);
    assert!(other.as_array().unwrap().is_empty());
    // Hostile text is no error; an empty query or a bad limit is a usage error (2).
    for q in ["\"", "NEAR(", "*", "a:b OR -x"] {
        h.json(&["docs", "search", q]);
    }
    let err = h.stderr(2, &["docs", "search", " "]);
    assert!(err.contains("query"), "{err}");
    let err = h.stderr(2, &["docs", "search", "x", "--limit", "5000"]);
    assert!(err.contains("limit"), "{err}");

    let show = h.json(&["docs", "show", &ids[0].to_string()]);
    assert_eq!(show["path"], "Setup.md");
    assert_eq!(
        show["chunks"][0]["text"],
        "install the narwhal toolkit first"
    );
    assert_eq!(show["links_in"][0]["path"], "Notes.md");
    let table = h.expect(0, &["docs", "show", &ids[1].to_string()]);
    assert!(
        table.contains("Setup") && table.contains("links out"),
        "{table}"
    );
    h.stderr(2, &["docs", "show", "999"]);
    h.stderr(2, &["docs", "show", "abc"]);

    let stats = h.json(&["docs", "stats"]);
    assert_eq!(stats["documents"], 2, "{stats}");
    assert_eq!(stats["by_source"]["vault"]["chunks"], 2, "{stats}");
    let yaml = h.expect(0, &["docs", "stats", "--format", "yaml"]);
    assert!(yaml.contains("documents: 2"), "{yaml}");
    let table = h.expect(0, &["docs", "search", "narwhal"]);
    assert!(
        table.contains("Setup.md") && table.contains("[narwhal]"),
        "{table}"
    );
}
