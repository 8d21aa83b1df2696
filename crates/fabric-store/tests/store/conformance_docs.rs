//! Conformance cases of the document store ([`fabric_store::DocStore`]): search, its
//! ranking and snippets, replacement, removal, filters, hostile queries, links and stats.

use std::collections::BTreeMap;

use fabric_core::doc::{Chunk, DocLink, DocType, NewDocument, SearchQuery};
use fabric_store::{Store, StoreError};

const T0: i64 = 1_800_000_000_000;

/// A document of `source` and `path` whose chunks hold `texts`.
pub fn doc(source: &str, path: &str, hash: &str, texts: &[&str]) -> NewDocument {
    NewDocument {
        source: source.into(),
        path: path.into(),
        doc_type: DocType::Markdown,
        title: path.trim_end_matches(".md").to_string(),
        size: texts.iter().map(|t| t.len() as u64).sum(),
        mtime: T0,
        hash: hash.into(),
        tags: vec![],
        meta: BTreeMap::from([("author".to_string(), serde_json::json!("ada"))]),
        links: vec![],
        chunks: texts
            .iter()
            .enumerate()
            .map(|(i, t)| Chunk {
                key: format!("{path}#{i}"),
                ord: i as u32,
                heading: if i == 0 {
                    String::new()
                } else {
                    format!("Part {i}")
                },
                text: t.to_string(),
            })
            .collect(),
    }
}

fn q(text: &str) -> SearchQuery {
    SearchQuery {
        text: text.into(),
        limit: 10,
        ..SearchQuery::default()
    }
}

async fn paths(s: &dyn Store, query: SearchQuery) -> Vec<String> {
    s.docs()
        .search(query)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.path)
        .collect()
}

pub async fn docs_search_ranks_and_marks_matched_words(s: &dyn Store) {
    let d = s.docs();
    d.put_document(
        doc(
            "notes",
            "dense.md",
            "h1",
            &["the zebra met a zebra and another zebra grazing"],
        ),
        T0,
    )
    .await
    .unwrap();
    d.put_document(
        doc(
            "notes",
            "sparse.md",
            "h2",
            &[
                "a long text about many animals of the savanna where one zebra appears once among \
               lions elephants giraffes antelopes buffalo hyenas and birds of every colour",
            ],
        ),
        T0,
    )
    .await
    .unwrap();
    d.put_document(doc("notes", "other.md", "h3", &["nothing to see here"]), T0)
        .await
        .unwrap();
    let hits = d.search(q("zebra")).await.unwrap();
    assert_eq!(
        hits.iter().map(|h| h.path.as_str()).collect::<Vec<_>>(),
        ["dense.md", "sparse.md"],
        "{hits:?}"
    );
    assert!(hits[0].score > hits[1].score, "{hits:?}");
    assert!(hits[0].snippet.contains("[zebra]"), "{}", hits[0].snippet);
    assert!(hits[1].snippet.contains("[zebra]"), "{}", hits[1].snippet);
    assert_eq!(
        (hits[0].source.as_str(), hits[0].title.as_str()),
        ("notes", "dense")
    );
    // Case folds; every word must be there; a phrase keeps its order.
    assert_eq!(paths(s, q("ZEBRA grazing")).await, ["dense.md"]);
    assert_eq!(paths(s, q("zebra giraffe")).await, Vec::<String>::new());
    assert_eq!(paths(s, q("\"zebra appears\"")).await, ["sparse.md"]);
    assert_eq!(paths(s, q("\"appears zebra\"")).await, Vec::<String>::new());
    // The chunk and its heading are named.
    d.put_document(
        doc("notes", "parts.md", "h4", &["intro", "body with quokka"]),
        T0,
    )
    .await
    .unwrap();
    let hit = &d.search(q("quokka")).await.unwrap()[0];
    assert_eq!((hit.chunk_ord, hit.heading.as_str()), (1, "Part 1"));
    // Limits.
    let mut one = q("zebra");
    one.limit = 1;
    assert_eq!(d.search(one).await.unwrap().len(), 1);
    for bad in [0, 1001] {
        let mut l = q("zebra");
        l.limit = bad;
        let e = d.search(l).await.unwrap_err();
        assert!(
            matches!(e, StoreError::Invalid(_)) && e.to_string().contains("limit"),
            "{e}"
        );
    }
}

pub async fn docs_put_many_stores_all_in_order_and_skips_unchanged(s: &dyn Store) {
    let d = s.docs();
    let kept = d
        .put_document(doc("notes", "b.md", "hb", &["old quokka"]), T0)
        .await
        .unwrap();
    let out = d
        .put_documents(
            vec![
                doc("notes", "a.md", "ha", &["first numbat"]),
                doc("notes", "b.md", "hb", &["never stored dingo"]),
                doc("notes", "c.md", "hc", &["third numbat", "with a bilby"]),
            ],
            T0 + 1,
        )
        .await
        .unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(
        out.iter().map(|o| o.changed).collect::<Vec<_>>(),
        [true, false, true]
    );
    assert_eq!(out[1].id, kept.id);
    let mut found = paths(s, q("numbat")).await;
    found.sort();
    assert_eq!(found, ["a.md", "c.md"]);
    assert!(d.search(q("dingo")).await.unwrap().is_empty());
    assert_eq!(paths(s, q("bilby")).await, ["c.md"]);
    assert_eq!(d.document(out[2].id).await.unwrap().chunks.len(), 2);
    assert!(d.put_documents(vec![], T0).await.unwrap().is_empty());
}

pub async fn docs_put_replaces_by_source_and_path_and_skips_an_unchanged_hash(s: &dyn Store) {
    let d = s.docs();
    let first = d
        .put_document(doc("notes", "a.md", "h1", &["old wombat words"]), T0)
        .await
        .unwrap();
    assert!(first.changed);
    // The same hash writes nothing, even with other content (which would be indexed).
    let same = d
        .put_document(
            doc("notes", "a.md", "h1", &["never stored platypus"]),
            T0 + 1,
        )
        .await
        .unwrap();
    assert_eq!((same.id, same.changed), (first.id, false));
    assert!(d.search(q("platypus")).await.unwrap().is_empty());
    assert_eq!(d.document(first.id).await.unwrap().document.indexed_at, T0);
    // A new hash replaces the document, its chunks and their hits.
    let new = d
        .put_document(
            doc(
                "notes",
                "a.md",
                "h2",
                &["new koala words", "and a second chunk"],
            ),
            T0 + 2,
        )
        .await
        .unwrap();
    assert!(new.changed);
    assert!(d.search(q("wombat")).await.unwrap().is_empty());
    assert_eq!(paths(s, q("koala")).await, ["a.md"]);
    let detail = d.document(new.id).await.unwrap();
    assert_eq!(detail.document.doc.hash, "h2");
    assert_eq!(detail.document.chunk_count, 2);
    assert_eq!(detail.chunks.len(), 2);
    assert_eq!(detail.document.doc.meta["author"], "ada");
    // The same path in another source is another document.
    let other = d
        .put_document(doc("mail", "a.md", "h1", &["koala"]), T0)
        .await
        .unwrap();
    assert_ne!(other.id, new.id);
    assert_eq!(d.search(q("koala")).await.unwrap().len(), 2);
    assert_eq!(d.doc_stats().await.unwrap().total.documents, 2);
    assert_eq!(d.doc_integrity_check().await.unwrap(), ["ok"]);
}

pub async fn docs_removal_removes_hits(s: &dyn Store) {
    let d = s.docs();
    for (src, path) in [("a", "x.md"), ("a", "y.md"), ("b", "x.md")] {
        d.put_document(doc(src, path, "h", &["capybara"]), T0)
            .await
            .unwrap();
    }
    assert!(d.remove_document("a", "x.md").await.unwrap());
    assert!(!d.remove_document("a", "x.md").await.unwrap());
    let mut left = d.search(q("capybara")).await.unwrap();
    left.sort_by(|l, r| (&l.source, &l.path).cmp(&(&r.source, &r.path)));
    assert_eq!(
        left.iter()
            .map(|h| (h.source.as_str(), h.path.as_str()))
            .collect::<Vec<_>>(),
        [("a", "y.md"), ("b", "x.md")]
    );
    assert_eq!(d.remove_source_documents("a").await.unwrap(), 1);
    assert_eq!(paths(s, q("capybara")).await, ["x.md"]);
    assert_eq!(d.remove_source_documents("a").await.unwrap(), 0);
    assert_eq!(d.doc_stats().await.unwrap().total.chunks, 1);
    assert_eq!(d.doc_integrity_check().await.unwrap(), ["ok"]);
}

pub async fn docs_filters_by_source_and_tag(s: &dyn Store) {
    let d = s.docs();
    let mut tagged = doc("vault", "t.md", "h", &["shared ocelot"]);
    tagged.tags = vec!["project".into(), "draft".into()];
    d.put_document(tagged, T0).await.unwrap();
    d.put_document(doc("vault", "u.md", "h", &["shared ocelot"]), T0)
        .await
        .unwrap();
    d.put_document(doc("mail", "m.md", "h", &["shared ocelot"]), T0)
        .await
        .unwrap();
    assert_eq!(d.search(q("ocelot")).await.unwrap().len(), 3);
    let mut by_source = q("ocelot");
    by_source.source = Some("mail".into());
    assert_eq!(paths(s, by_source).await, ["m.md"]);
    let mut by_tag = q("ocelot");
    by_tag.tag = Some("draft".into());
    assert_eq!(paths(s, by_tag.clone()).await, ["t.md"]);
    by_tag.source = Some("mail".into());
    assert!(paths(s, by_tag).await.is_empty());
    let mut none = q("ocelot");
    none.tag = Some("nope".into());
    assert!(paths(s, none).await.is_empty());
}

pub async fn docs_hostile_queries_are_not_errors(s: &dyn Store) {
    let d = s.docs();
    d.put_document(
        doc(
            "notes",
            "h.md",
            "h",
            &["near the bridge: a:b or c-d, naïve café 東京 NEAR"],
        ),
        T0,
    )
    .await
    .unwrap();
    for hostile in [
        "\"",
        "\"\"",
        "*",
        "NEAR(",
        "NEAR(a b)",
        "-",
        "-bridge",
        "OR",
        "AND",
        "NOT",
        "a:b",
        "heading:bridge",
        "(",
        ")",
        "^",
        "{a b}",
        "bridge*",
        "'",
        "\\",
        "%",
        "_",
        "; DROP TABLE documents; --",
        "東京",
        "café",
        "🦀",
        "a\u{0}b",
        "\"unbalanced phrase",
        "&",
        "|",
        "!",
        "<->",
        ":*",
    ] {
        let r = d.search(q(hostile)).await;
        assert!(r.is_ok(), "{hostile:?}: {r:?}");
    }
    // Syntax words are plain words.
    assert_eq!(paths(s, q("NEAR")).await, ["h.md"]);
    assert_eq!(paths(s, q("OR bridge")).await, ["h.md"]);
    assert_eq!(paths(s, q("a:b")).await, ["h.md"]);
    assert_eq!(paths(s, q("東京")).await, ["h.md"]);
    assert!(paths(s, q("*")).await.is_empty());
    for (bad, _) in [("", 0), ("   ", 0)] {
        let e = d.search(q(bad)).await.unwrap_err();
        assert!(
            matches!(e, StoreError::Invalid(_)) && e.to_string().contains("query"),
            "{e}"
        );
    }
    let long = "w ".repeat(fabric_core::doc::MAX_QUERY_BYTES);
    let e = d.search(q(&long)).await.unwrap_err();
    assert!(e.to_string().contains("query"), "{e}");
    // The store still works.
    assert_eq!(d.doc_stats().await.unwrap().total.documents, 1);
}

pub async fn docs_show_links_out_and_in(s: &dyn Store) {
    let d = s.docs();
    let mut a = doc("vault", "notes/Alpha.md", "h", &["alpha"]);
    a.links = vec![
        DocLink {
            target: "Beta".into(),
            kind: "wikilink".into(),
        },
        DocLink {
            target: "img.png".into(),
            kind: "embed".into(),
        },
    ];
    let mut c = doc("vault", "Gamma.md", "h", &["gamma"]);
    c.links = vec![DocLink {
        target: "notes/Beta.md".into(),
        kind: "link".into(),
    }];
    // Another source's link does not count.
    let mut x = doc("other", "X.md", "h", &["x"]);
    x.links = c.links.clone();
    let a = d.put_document(a, T0).await.unwrap().id;
    let b = d
        .put_document(doc("vault", "notes/Beta.md", "h", &["beta"]), T0)
        .await
        .unwrap()
        .id;
    let c = d.put_document(c, T0).await.unwrap().id;
    d.put_document(x, T0).await.unwrap();
    let alpha = d.document(a).await.unwrap();
    assert_eq!(
        alpha
            .links_out
            .iter()
            .map(|l| (l.target.as_str(), l.kind.as_str()))
            .collect::<Vec<_>>(),
        [("Beta", "wikilink"), ("img.png", "embed")]
    );
    assert!(alpha.links_in.is_empty());
    let beta = d.document(b).await.unwrap();
    assert_eq!(
        beta.links_in
            .iter()
            .map(|l| (l.doc_id, l.kind.as_str()))
            .collect::<Vec<_>>(),
        [(c, "link"), (a, "wikilink")]
    );
    assert_eq!(beta.chunks[0].text, "beta");
    let e = d.document(b + 1_000).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound { .. }), "{e}");
}

pub async fn docs_stats_and_integrity(s: &dyn Store) {
    let d = s.docs();
    assert_eq!(d.doc_stats().await.unwrap().total.documents, 0);
    assert_eq!(d.doc_integrity_check().await.unwrap(), ["ok"]);
    d.put_document(doc("a", "1.md", "h", &["one", "two"]), T0)
        .await
        .unwrap();
    let mut code = doc("b", "2.rs", "h", &["fn main"]);
    code.doc_type = DocType::Code;
    d.put_document(code, T0).await.unwrap();
    let st = d.doc_stats().await.unwrap();
    assert_eq!(
        (st.total.documents, st.total.chunks, st.total.bytes),
        (2, 3, 13)
    );
    assert_eq!(st.by_type["markdown"].chunks, 2);
    assert_eq!(st.by_type["code"].documents, 1);
    assert_eq!(st.by_source["b"].bytes, 7);
    assert_eq!(d.doc_integrity_check().await.unwrap(), ["ok"]);
}

pub async fn docs_compaction_merges_segments_until_the_index_is_compact(s: &dyn Store) {
    let d = s.docs();
    // Each stored batch leaves a segment of its own.
    for i in 0..24 {
        let path = format!("n{i}.md");
        d.put_document(
            doc("notes", &path, "h", &[&format!("walrus number{i}")]),
            T0,
        )
        .await
        .unwrap();
    }
    let mut steps = 0;
    while d.compact_index(2).await.unwrap() {
        steps += 1;
        assert!(steps < 10_000, "compaction never ends");
    }
    if s.backend() == "sqlite" {
        assert!(steps > 0, "24 segments and nothing to merge");
    } else {
        assert_eq!(steps, 0, "PostgreSQL's GIN index keeps itself");
    }
    assert_eq!(d.search(q("walrus")).await.unwrap().len(), 10);
    assert_eq!(paths(s, q("number7")).await, ["n7.md"]);
    assert_eq!(d.doc_integrity_check().await.unwrap(), ["ok"]);
}

pub async fn docs_an_unfiltered_search_ranks_the_newest_window_a_filtered_one_all(s: &dyn Store) {
    use fabric_core::doc::RANK_WINDOW;
    let d = s.docs();
    // The best hit for "common", oldest; then a window's worth of weaker newer ones.
    d.put_document(doc("old", "best.md", "h", &["common common common"]), T0)
        .await
        .unwrap();
    let texts: Vec<String> = (0..RANK_WINDOW)
        .map(|i| format!("common filler {i}"))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    d.put_document(doc("new", "many.md", "h", &refs), T0)
        .await
        .unwrap();
    let query = |source: Option<&str>| SearchQuery {
        text: "common".into(),
        source: source.map(String::from),
        tag: None,
        limit: 1,
    };
    assert_eq!(paths(s, query(None)).await, ["many.md"]);
    assert_eq!(paths(s, query(Some("old"))).await, ["best.md"]);
    // Within the window everything is ranked: the best hit wins.
    d.remove_document("new", "many.md").await.unwrap();
    assert_eq!(paths(s, query(None)).await, ["best.md"]);
}
