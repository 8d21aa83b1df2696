//! `fabric docs search|show|stats`.

use std::process::ExitCode;

use fabric_core::doc::DocCounts;

use crate::cli::DocsCmd;
use crate::context::{Ctx, Usage};
use crate::output::{pairs, print, short, table, time};

pub async fn run(ctx: &Ctx, cmd: DocsCmd) -> anyhow::Result<ExitCode> {
    let f = ctx.global.format;
    match cmd {
        DocsCmd::Search {
            query,
            source,
            tag,
            limit,
        } => {
            let hits = ctx
                .console()
                .await?
                .docs_search(&query, source.as_deref(), tag.as_deref(), Some(limit))
                .await?;
            print(f, &hits, || {
                if hits.is_empty() {
                    return "no hits".to_string();
                }
                table(
                    &["doc", "source", "path", "section", "snippet"],
                    hits.iter()
                        .map(|h| {
                            vec![
                                h.doc_id.to_string(),
                                h.source.clone(),
                                h.path.clone(),
                                short(&h.heading, 30),
                                short(&h.snippet, 80),
                            ]
                        })
                        .collect(),
                )
            })?;
        }
        DocsCmd::Show { id } => {
            let id = id
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    Usage(format!(
                        "invalid document id '{id}': expected a positive integer"
                    ))
                })?;
            let d = ctx.console().await?.doc(id).await?;
            print(f, &d, || {
                let m = &d.document.doc;
                let mut out = pairs(&[
                    ("id", d.document.id.to_string()),
                    ("source", m.source.clone()),
                    ("path", m.path.clone()),
                    ("type", m.doc_type.as_str().to_string()),
                    ("title", m.title.clone()),
                    ("size", m.size.to_string()),
                    ("modified", time(Some(m.mtime))),
                    ("indexed", time(Some(d.document.indexed_at))),
                    ("hash", m.hash.clone()),
                    ("tags", m.tags.join(", ")),
                    ("chunks", d.document.chunk_count.to_string()),
                ]);
                out.push_str("\nchunks\n");
                out.push_str(&table(
                    &["#", "section", "text"],
                    d.chunks
                        .iter()
                        .map(|c| vec![c.ord.to_string(), short(&c.heading, 30), short(&c.text, 80)])
                        .collect(),
                ));
                out.push_str("\nlinks out\n");
                out.push_str(&table(
                    &["target", "kind"],
                    d.links_out
                        .iter()
                        .map(|l| vec![l.target.clone(), l.kind.clone()])
                        .collect(),
                ));
                out.push_str("\nlinks in\n");
                out.push_str(&table(
                    &["doc", "path", "kind"],
                    d.links_in
                        .iter()
                        .map(|l| vec![l.doc_id.to_string(), l.path.clone(), l.kind.clone()])
                        .collect(),
                ));
                out
            })?;
        }
        DocsCmd::Stats => {
            let s = ctx.console().await?.docs_stats().await?;
            print(f, &s, || {
                let row = |name: &str, c: &DocCounts| {
                    vec![
                        name.to_string(),
                        c.documents.to_string(),
                        c.chunks.to_string(),
                        c.bytes.to_string(),
                    ]
                };
                let mut rows = vec![row("total", &s.total)];
                rows.extend(s.by_type.iter().map(|(k, c)| row(&format!("type {k}"), c)));
                rows.extend(
                    s.by_source
                        .iter()
                        .map(|(k, c)| row(&format!("source {k}"), c)),
                );
                table(&["", "documents", "chunks", "bytes"], rows)
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
