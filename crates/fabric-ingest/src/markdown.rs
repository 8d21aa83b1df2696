//! Markdown (Obsidian style): YAML front matter (title, tags, the other fields as meta),
//! inline `#tags`, `[[wikilinks]]`, `![[embeds]]` and markdown links, and the top-level
//! blocks under their heading path for chunking (a fenced code block is one atomic block).
//! A pure function of the text.

use std::collections::BTreeMap;

use fabric_core::doc::DocLink;
use pulldown_cmark::{Event, LinkType, Options, Parser, Tag, TagEnd};
use serde_json::Value;

use crate::chunk::Block;

/// What a markdown file yields.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    /// Front matter `title`, else the first heading.
    pub title: Option<String>,
    pub tags: Vec<String>,
    pub links: Vec<DocLink>,
    /// Front matter fields other than `title` and `tags`.
    pub meta: BTreeMap<String, Value>,
    pub blocks: Vec<Block>,
}

/// Splits off YAML front matter: `---` on the first line up to a line of `---` or `...`.
/// Returns (front matter, body).
fn split_front_matter(text: &str) -> (Option<&str>, &str) {
    let first_end = match text.find('\n') {
        Some(i) => i,
        None => return (None, text),
    };
    if text[..first_end].trim_end() != "---" {
        return (None, text);
    }
    let mut pos = first_end + 1;
    while pos <= text.len() {
        let end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
        let line = text[pos..end].trim_end();
        if line == "---" || line == "..." {
            let body = text.get(end + 1..).unwrap_or("");
            return (Some(&text[first_end + 1..pos]), body);
        }
        if end == text.len() {
            break;
        }
        pos = end + 1;
    }
    (None, text)
}

fn push_tag(tags: &mut Vec<String>, tag: &str) {
    let t = tag.trim().trim_start_matches('#').trim();
    if !t.is_empty() && !tags.iter().any(|x| x == t) {
        tags.push(t.to_string());
    }
}

fn tags_of(v: &Value, tags: &mut Vec<String>) {
    match v {
        Value::String(s) => s
            .split(|c: char| c == ',' || c.is_whitespace())
            .for_each(|t| push_tag(tags, t)),
        Value::Array(a) => a.iter().for_each(|x| tags_of(x, tags)),
        _ => {}
    }
}

fn is_tag_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '/')
}

/// Inline `#tags`: after the start or whitespace, tag characters with at least one that is
/// not a digit (`#123` is an issue number, not a tag).
fn inline_tags(text: &str, tags: &mut Vec<String>) {
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        if c == '#' && prev.is_none_or(char::is_whitespace) {
            let rest = &text[i + 1..];
            let end = rest.find(|c: char| !is_tag_char(c)).unwrap_or(rest.len());
            let tag = rest[..end].trim_end_matches('/');
            if tag.chars().any(|c| !c.is_ascii_digit()) {
                push_tag(tags, tag);
            }
        }
        prev = Some(c);
    }
}

fn push_link(links: &mut Vec<DocLink>, target: &str, kind: &str) {
    let target = target.trim();
    if target.is_empty() || links.iter().any(|l| l.target == target && l.kind == kind) {
        return;
    }
    links.push(DocLink {
        target: target.to_string(),
        kind: kind.to_string(),
    });
}

/// Front matter larger than this is not parsed (`meta.front_matter_error` says so).
const MAX_FRONT_MATTER_BYTES: usize = 64 * 1024;

/// Deeper nesting than this is not parsed: the YAML parser is quadratic in it (100,000 `[`
/// took 35 s).
const MAX_FRONT_MATTER_DEPTH: usize = 32;

/// Why front matter is not handed to the YAML parser, if it is not: too large, or nested too
/// deep (flow brackets, or `- ` / `? ` / indentation steps of a block), estimated without
/// regard to quoting, so an odd quoted string may be refused too (it is kept out, not fatal).
fn front_matter_refusal(fm: &str) -> Option<String> {
    if fm.len() > MAX_FRONT_MATTER_BYTES {
        return Some(format!(
            "front matter over {MAX_FRONT_MATTER_BYTES} bytes is not parsed"
        ));
    }
    let too_deep = || {
        Some(format!(
            "front matter nested deeper than {MAX_FRONT_MATTER_DEPTH} is not parsed"
        ))
    };
    let mut flow = 0usize;
    for line in fm.lines() {
        let indent = line.len() - line.trim_start().len();
        let mut rest = line.trim_start();
        let mut block = indent / 2;
        while let Some(r) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("? ")) {
            block += 1;
            rest = r.trim_start();
        }
        if block > MAX_FRONT_MATTER_DEPTH {
            return too_deep();
        }
        for c in line.chars() {
            match c {
                '[' | '{' => flow += 1,
                ']' | '}' => flow = flow.saturating_sub(1),
                _ => {}
            }
            if flow + block > MAX_FRONT_MATTER_DEPTH {
                return too_deep();
            }
        }
    }
    None
}

/// Parses a markdown file (see the module doc).
pub(crate) fn parse(text: &str) -> Parsed {
    let mut out = Parsed::default();
    let (front, body) = split_front_matter(text);
    if let Some(why) = front.and_then(front_matter_refusal) {
        out.meta
            .insert("front_matter_error".into(), Value::String(why));
    } else if let Some(fm) = front {
        match serde_yaml_ng::from_str::<Value>(fm) {
            Ok(Value::Object(map)) => {
                for (k, v) in map {
                    match k.as_str() {
                        "title" => out.title = v.as_str().map(str::to_string),
                        "tags" | "tag" => tags_of(&v, &mut out.tags),
                        _ => {
                            out.meta.insert(k, v);
                        }
                    }
                }
            }
            Ok(Value::Null) => {}
            Ok(other) => {
                out.meta.insert("front_matter".into(), other);
            }
            Err(e) => {
                out.meta
                    .insert("front_matter_error".into(), Value::String(e.to_string()));
            }
        }
    }

    let opts = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_WIKILINKS;
    let mut depth = 0usize;
    let mut headings: Vec<(u8, String)> = Vec::new();
    let mut heading_path = String::new();
    let mut in_heading: Option<(u8, String)> = None;
    let mut in_code = 0usize;
    let mut text_run = String::new();
    let mut first_heading: Option<String> = None;

    for (event, range) in Parser::new_ext(body, opts).into_offset_iter() {
        if !matches!(event, Event::Text(_)) && !text_run.is_empty() {
            inline_tags(&text_run, &mut out.tags);
            text_run.clear();
        }
        match event {
            Event::Start(tag) => {
                if depth == 0 {
                    match &tag {
                        Tag::Heading { level, .. } => {
                            in_heading = Some((*level as u8, String::new()));
                        }
                        Tag::CodeBlock(_) => {
                            out.blocks
                                .push(Block::atomic(&heading_path, body[range.clone()].trim_end()));
                        }
                        _ => out
                            .blocks
                            .push(Block::text(&heading_path, body[range.clone()].trim_end())),
                    }
                }
                match tag {
                    Tag::CodeBlock(_) => in_code += 1,
                    Tag::Link {
                        link_type,
                        dest_url,
                        ..
                    } => {
                        let kind = match link_type {
                            LinkType::WikiLink { .. } => "wikilink",
                            _ => "link",
                        };
                        push_link(&mut out.links, &dest_url, kind);
                    }
                    Tag::Image { dest_url, .. } => push_link(&mut out.links, &dest_url, "embed"),
                    _ => {}
                }
                depth += 1;
            }
            Event::End(end) => {
                depth = depth.saturating_sub(1);
                if matches!(end, TagEnd::CodeBlock) {
                    in_code = in_code.saturating_sub(1);
                }
                if depth == 0 {
                    if let (TagEnd::Heading(_), Some((level, title))) = (end, in_heading.take()) {
                        let title = title.trim().to_string();
                        while headings.last().is_some_and(|(l, _)| *l >= level) {
                            headings.pop();
                        }
                        if first_heading.is_none() && !title.is_empty() {
                            first_heading = Some(title.clone());
                        }
                        headings.push((level, title));
                        heading_path = headings
                            .iter()
                            .map(|(_, t)| t.as_str())
                            .filter(|t| !t.is_empty())
                            .collect::<Vec<_>>()
                            .join(" > ");
                    }
                }
            }
            Event::Text(t) => {
                if let Some((_, h)) = in_heading.as_mut() {
                    h.push_str(&t);
                }
                if in_code == 0 {
                    text_run.push_str(&t);
                }
            }
            Event::Code(t) => {
                if let Some((_, h)) = in_heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::Html(t) | Event::InlineHtml(t) if depth == 0 => {
                out.blocks.push(Block::text(&heading_path, t.trim_end()));
            }
            _ => {}
        }
    }
    if !text_run.is_empty() {
        inline_tags(&text_run, &mut out.tags);
    }
    if out.title.is_none() {
        out.title = first_heading;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_tags_links_and_title() {
        let md = "---\ntitle: My Note\ntags: [alpha, \"#beta\"]\nstatus: draft\n---\n\
                  # Heading\n\nText with #gamma and #123 and a#b, see [[Other Note]] and \
                  [[Third|alias]].\n\n![[image.png]] and [web](https://example.com/x) \
                  ![pic](pic.jpg)\n\n```\n#notatag [[notalink]]\n```\n";
        let p = parse(md);
        assert_eq!(p.title.as_deref(), Some("My Note"));
        assert_eq!(p.tags, vec!["alpha", "beta", "gamma"]);
        assert_eq!(p.meta.get("status"), Some(&Value::String("draft".into())));
        let links: Vec<(&str, &str)> = p
            .links
            .iter()
            .map(|l| (l.target.as_str(), l.kind.as_str()))
            .collect();
        assert_eq!(
            links,
            vec![
                ("Other Note", "wikilink"),
                ("Third", "wikilink"),
                ("image.png", "embed"),
                ("https://example.com/x", "link"),
                ("pic.jpg", "embed"),
            ]
        );
        assert!(p.blocks.iter().all(|b| b.heading == "Heading"));
        assert!(p.blocks.last().is_some_and(|b| b.atomic));
    }

    #[test]
    fn title_falls_back_to_the_first_heading_and_paths_nest() {
        let p = parse("intro\n\n# A\n\n## B\n\ntext\n\n# C\n\nmore\n");
        assert_eq!(p.title.as_deref(), Some("A"));
        let heads: Vec<&str> = p.blocks.iter().map(|b| b.heading.as_str()).collect();
        assert_eq!(heads, vec!["", "A > B", "C"]);
    }

    #[test]
    fn bad_or_unclosed_front_matter_is_kept_out_of_the_way() {
        let p = parse("---\n: : [\n---\nbody\n");
        assert!(p.meta.contains_key("front_matter_error"));
        let p = parse("---\nnot closed\n");
        assert!(p.meta.is_empty());
        assert_eq!(p.blocks.len(), 1, "the rule is no block, the paragraph is");
    }
}

#[cfg(test)]
mod hostile {
    use super::*;

    #[test]
    fn deep_nesting_and_yaml_bombs_are_survived_quickly() {
        let t = std::time::Instant::now();
        for s in [
            ">".repeat(100_000),
            "* ".repeat(50_000),
            "[".repeat(100_000),
            "[[".repeat(50_000),
            "`".repeat(100_000),
            "*a ".repeat(50_000),
            format!("---\nx: {}\n---\nbody", "[".repeat(100_000)),
            format!("---\nx: {}\n---\nbody", "{a: ".repeat(30)),
            format!("---\nx:\n{}\n---\nbody", "- ".repeat(30_000)),
            format!("---\nx:\n{}\n---\nbody", "? ".repeat(30_000)),
            format!(
                "---\n{}\n---\nbody",
                (0..1000)
                    .map(|i| format!("{}k:", " ".repeat(i)))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
            format!("---\n{}\n---\nbody", "k: [a, b, {c: d}]\n".repeat(3000)),
            "---\na: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n\
             c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n\
             e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n\
             g: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n---\nbody"
                .to_string(),
        ] {
            let _ = parse(&s);
        }
        // A generous bound: without the depth gate 100,000 `[` in front matter took 35 s.
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            t.elapsed()
        );
        let p = parse(&format!("---\nx: {}\n---\nbody", "[".repeat(50_000)));
        let err = p.meta.get("front_matter_error").and_then(Value::as_str);
        assert!(err.is_some_and(|e| e.contains("nested deeper")), "{err:?}");
        let p = parse(&format!("---\nt: {}\n---\n", "x".repeat(70_000)));
        assert!(p.meta.contains_key("front_matter_error"));
        let p = parse("---\ntags: [a]\nnested: {a: [1, {b: 2}]}\n---\nbody");
        assert_eq!(p.tags, vec!["a"]);
        assert!(p.meta.contains_key("nested"));
    }
}
