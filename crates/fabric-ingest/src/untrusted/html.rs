//! HTML → text, headings and links: a linear nesting-depth gate first (html5ever is quadratic
//! in nesting depth and the DOM is dropped recursively), then html2text renders the text
//! through [`Marks`], a decorator that marks heading lines and collects `<a href>` targets.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use fabric_core::doc::DocLink;
use html2text::render::TextDecorator;

use crate::chunk::Block;
use crate::error::ExtractError;

/// Deepest element nesting parsed; deeper HTML is refused as `parse_error` before html5ever
/// sees it.
pub const MAX_HTML_DEPTH: usize = 512;

/// Width the text is wrapped at (wide: a paragraph becomes few, long lines).
const WIDTH: usize = 400;

/// Most links kept of one page.
const MAX_LINKS: usize = 10_000;

/// Starts every rendered line of a heading: `\u{1}` then the level digit.
const HEADING_MARK: char = '\u{1}';

/// What the HTML parser yields.
pub(super) struct Parsed {
    pub title: Option<String>,
    pub links: Vec<DocLink>,
    pub blocks: Vec<Block>,
}

/// Elements that never have content (no end tag).
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr", "keygen", "frame", "basefont", "bgsound",
];

/// Elements whose content is text up to their end tag (never elements).
const RAW_TEXT: &[&str] = &[
    "script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes",
];

/// For a start tag that implicitly closes an open element: the elements it closes and the
/// ones that bound the search (`<li>` closes an open `<li>` unless a list lies in between).
fn implied_close(name: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    const SCOPE: &[&str] = &[
        "table", "td", "th", "caption", "button", "html", "marquee", "object", "applet", "template",
    ];
    Some(match name {
        "p" => (&["p"], SCOPE),
        "li" => (
            &["li"],
            &[
                "ul", "ol", "table", "td", "th", "button", "html", "template",
            ],
        ),
        "dt" | "dd" => (
            &["dt", "dd"],
            &["dl", "table", "td", "th", "html", "template"],
        ),
        "tr" => (&["tr"], &["table", "html", "template"]),
        "td" | "th" => (&["td", "th"], &["tr", "table", "html", "template"]),
        "thead" | "tbody" | "tfoot" => (&["thead", "tbody", "tfoot"], &["table", "html"]),
        "option" => (&["option"], &["select", "datalist", "html"]),
        "rb" | "rt" | "rp" | "rtc" => (&["rb", "rt", "rp", "rtc"], &["ruby", "html"]),
        _ => return None,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// What the gate learned besides the depth.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Scan {
    /// The deepest nesting seen.
    pub depth: usize,
    /// The raw text of the first `<title>`.
    pub title: Option<String>,
}

/// Walks the tags of `bytes` once, modelling the element stack the way an HTML tree builder
/// would closely enough for a bound: void elements and raw-text elements (`script`, `title`,
/// …) never nest; an end tag closes the innermost open element of its name and everything
/// inside it, and is ignored when none is open (so `</p>` cannot hide a `<div>`); a `<p>`,
/// `<li>`, `<td>`, … closes an open sibling within its scope; a self-closing tag (`<x/>`) closes only
/// inside `<svg>` or `<math>`, as in HTML. Refuses past `limit` as `parse_error`.
pub(super) fn depth_gate(bytes: &[u8], limit: usize) -> Result<Scan, ExtractError> {
    let mut stack: Vec<String> = Vec::new();
    let mut open: HashMap<String, usize> = HashMap::new();
    let mut scan = Scan::default();
    let mut i = 0;
    while let Some(p) = bytes[i..].iter().position(|&b| b == b'<') {
        i += p + 1;
        let rest = &bytes[i..];
        if rest.starts_with(b"!--") {
            i += find(&rest[3..], b"-->").map_or(rest.len(), |e| e + 6);
            continue;
        }
        if rest.starts_with(b"!") || rest.starts_with(b"?") {
            i += rest
                .iter()
                .position(|&b| b == b'>')
                .map_or(rest.len(), |e| e + 1);
            continue;
        }
        let closing = rest.starts_with(b"/");
        let start = usize::from(closing);
        let len = rest[start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'_'))
            .count();
        if len == 0 || !rest[start].is_ascii_alphabetic() {
            continue; // a `<` in text
        }
        let name = String::from_utf8_lossy(&rest[start..start + len]).to_ascii_lowercase();
        // The end of the tag: the first `>` outside quotes.
        let mut j = start + len;
        let mut quote = None;
        while j < rest.len() {
            match (quote, rest[j]) {
                (None, b'"' | b'\'') => quote = Some(rest[j]),
                (Some(q), c) if c == q => quote = None,
                (None, b'>') => break,
                _ => {}
            }
            j += 1;
        }
        let self_closing = j > 0 && rest.get(j - 1) == Some(&b'/');
        i += (j + 1).min(rest.len());
        if closing {
            if open.get(&name).copied().unwrap_or(0) > 0 {
                while let Some(top) = stack.pop() {
                    if let Some(n) = open.get_mut(&top) {
                        *n -= 1;
                    }
                    if top == name {
                        break;
                    }
                }
            }
            continue;
        }
        if VOID.contains(&name.as_str()) {
            continue;
        }
        if RAW_TEXT.contains(&name.as_str()) {
            let body = &bytes[i..];
            let end = find_ci(body, format!("</{name}").as_bytes()).unwrap_or(body.len());
            if name == "title" && scan.title.is_none() {
                scan.title = Some(decode_entities(&String::from_utf8_lossy(&body[..end])));
            }
            i += end;
            continue;
        }
        let foreign =
            open.get("svg").copied().unwrap_or(0) + open.get("math").copied().unwrap_or(0);
        if self_closing && foreign > 0 {
            continue;
        }
        if let Some((closes, bounds)) = implied_close(&name) {
            let found = stack
                .iter()
                .rev()
                .take_while(|e| !bounds.contains(&e.as_str()))
                .position(|e| closes.contains(&e.as_str()));
            if let Some(k) = found {
                for top in stack.drain(stack.len() - 1 - k..) {
                    if let Some(n) = open.get_mut(&top) {
                        *n -= 1;
                    }
                }
            }
        }
        *open.entry(name.clone()).or_insert(0) += 1;
        stack.push(name);
        scan.depth = scan.depth.max(stack.len());
        if stack.len() > limit {
            return Err(ExtractError::Parse(format!(
                "HTML nested deeper than {limit} elements (at byte {i}): refused unparsed"
            )));
        }
    }
    Ok(scan)
}

/// Decodes the character references a title commonly holds (`&amp;`, `&#39;`, `&#x27;`, …);
/// unknown ones stay as written. Whitespace runs collapse to one space.
pub(super) fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        let end = rest[1..].find(';').map(|e| e + 1).filter(|&e| e <= 10);
        let decoded = end.and_then(|e| {
            let ent = &rest[1..e];
            let c = match ent {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => match ent.strip_prefix('#') {
                    Some(n) => match n.strip_prefix(['x', 'X']) {
                        Some(h) => u32::from_str_radix(h, 16).ok(),
                        None => n.parse().ok(),
                    }
                    .and_then(char::from_u32),
                    None => None,
                },
            };
            c.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, used)) => {
                out.push(c);
                rest = &rest[used..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The html2text decorator: no markup around text, a [`HEADING_MARK`] and the level before
/// every heading line, and every link target collected (shared with sub-block decorators).
#[derive(Clone, Default)]
struct Marks {
    links: Rc<RefCell<Vec<String>>>,
}

impl TextDecorator for Marks {
    type Annotation = ();

    fn decorate_link_start(&mut self, url: &str) -> (String, ()) {
        let mut links = self.links.borrow_mut();
        if links.len() < MAX_LINKS {
            links.push(url.to_string());
        }
        (String::new(), ())
    }
    fn decorate_link_end(&mut self) -> String {
        String::new()
    }
    fn decorate_em_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_em_end(&self) -> String {
        String::new()
    }
    fn decorate_strong_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_strong_end(&self) -> String {
        String::new()
    }
    fn decorate_strikeout_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_strikeout_end(&self) -> String {
        String::new()
    }
    fn decorate_code_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_code_end(&self) -> String {
        String::new()
    }
    fn decorate_preformat_first(&self) {}
    fn decorate_preformat_cont(&self) {}
    fn decorate_image(&mut self, _src: &str, title: &str) -> (String, ()) {
        (title.to_string(), ())
    }
    fn header_prefix(&self, level: usize) -> String {
        format!("{HEADING_MARK}{}", level.min(9))
    }
    fn quote_prefix(&self) -> String {
        String::new()
    }
    fn unordered_item_prefix(&self) -> String {
        "- ".into()
    }
    fn ordered_item_prefix(&self, i: i64) -> String {
        format!("{i}. ")
    }
    fn make_subblock_decorator(&self) -> Self {
        self.clone()
    }
}

/// Cuts rendered text into blocks: heading lines (marked) start a new heading path, blank
/// lines end a paragraph. Returns the blocks and the first level-1 heading.
fn sections(text: &str) -> (Vec<Block>, Option<String>) {
    let mut blocks = Vec::new();
    let mut path: Vec<(u32, String)> = Vec::new();
    let mut heading = String::new();
    let mut para = String::new();
    let mut first_h1 = None;
    let mut last_heading_line: Option<u32> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(HEADING_MARK) {
            let level = rest
                .chars()
                .next()
                .and_then(|c| c.to_digit(10))
                .unwrap_or(1);
            let words = rest.get(1..).unwrap_or("").trim();
            if !para.is_empty() {
                blocks.push(Block::text(&heading, std::mem::take(&mut para)));
            }
            match (last_heading_line, path.last_mut()) {
                // A wrapped heading: its lines carry the mark each.
                (Some(l), Some((_, t))) if l == level => {
                    t.push(' ');
                    t.push_str(words);
                }
                _ => {
                    while path.last().is_some_and(|(l, _)| *l >= level) {
                        path.pop();
                    }
                    path.push((level, words.to_string()));
                }
            }
            if level == 1 && first_h1.is_none() && !words.is_empty() {
                first_h1 = Some(words.to_string());
            }
            last_heading_line = Some(level);
            heading = path
                .iter()
                .map(|(_, t)| t.as_str())
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join(" > ");
            continue;
        }
        last_heading_line = None;
        let line = line.trim_end();
        if line.trim().is_empty() {
            if !para.is_empty() {
                blocks.push(Block::text(&heading, std::mem::take(&mut para)));
            }
        } else {
            if !para.is_empty() {
                para.push('\n');
            }
            para.push_str(line);
        }
    }
    if !para.is_empty() {
        blocks.push(Block::text(&heading, para));
    }
    (blocks, first_h1)
}

/// Parses an HTML page (see the module doc). Invalid UTF-8 is decoded lossily.
pub(super) fn parse(bytes: &[u8]) -> Result<Parsed, ExtractError> {
    let scan = depth_gate(bytes, MAX_HTML_DEPTH)?;
    let marks = Marks::default();
    let links = marks.links.clone();
    let config = html2text::config::with_decorator(marks)
        .no_table_borders()
        .allow_width_overflow();
    let err = |e: html2text::Error| ExtractError::Parse(format!("HTML: {e}"));
    let dom = config.parse_html(bytes).map_err(err)?;
    let tree = config.dom_to_render_tree(&dom).map_err(err)?;
    let text = config.render_to_string(tree, WIDTH).map_err(err)?;
    drop(dom);
    let (blocks, h1) = sections(&text);
    let mut seen = std::collections::HashSet::new();
    let links = links
        .take()
        .into_iter()
        .filter(|u| {
            let u = u.trim();
            !u.is_empty()
                && !u.starts_with('#')
                && !u.to_ascii_lowercase().starts_with("javascript:")
        })
        .filter(|u| seen.insert(u.clone()))
        .map(|target| DocLink {
            target,
            kind: "link".into(),
        })
        .collect();
    Ok(Parsed {
        title: scan.title.filter(|t| !t.is_empty()).or(h1),
        links,
        blocks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(html: &str) -> Result<usize, ExtractError> {
        depth_gate(html.as_bytes(), MAX_HTML_DEPTH).map(|s| s.depth)
    }

    #[test]
    fn the_gate_models_nesting() {
        assert_eq!(
            depth("<html><body><div><p>x</p></div></body></html>"),
            Ok(4)
        );
        // Siblings that close each other, void and raw-text elements do not nest.
        let flat = "<ul>".to_string() + &"<li>a<p>b<p>c<br><img src=x>".repeat(5000) + "</ul>";
        assert_eq!(depth(&flat), Ok(3));
        let script = "<script>".to_string() + &"<div>".repeat(5000) + "</script><p>x";
        assert_eq!(depth(&script), Ok(1));
        let svg = "<svg>".to_string() + &"<path d='a>b'/>".repeat(5000) + "</svg>";
        assert_eq!(depth(&svg), Ok(1));
        assert_eq!(depth("<!-- <div><div> --><a href=\"x>y\">z</a>"), Ok(1));
        // Deep nesting in every disguise is refused.
        for deep in [
            "<div>".repeat(100_000),
            "<div/>".repeat(100_000),
            "<div></p>".repeat(100_000),
            "<b><i>".repeat(300),
        ] {
            let e = depth(&deep).expect_err("deep");
            assert!(e.to_string().contains("deeper than 512"), "{e}");
        }
        assert_eq!(depth(&"<div>".repeat(512)), Ok(512));
    }

    #[test]
    fn titles_decode_entities() {
        assert_eq!(
            decode_entities("A &amp; B &#39;c&#x27; &bogus; &"),
            "A & B 'c' &bogus; &"
        );
        let s = depth_gate(b"<html><head><TITLE> Q&amp;A\n page </title>", 10).expect("ok");
        assert_eq!(s.title.as_deref(), Some("Q&A page"));
    }

    #[test]
    fn pages_become_sections_with_links() {
        let html = r##"<!doctype html><html><head><title>Guide</title>
            <style>.x { color: red }</style><script>var hidden = 1;</script></head><body>
            <h1>Install</h1><p>Run the <a href="https://example.org/setup">setup</a> tool.</p>
            <h2>Linux</h2><p>Use <b>apt</b>.</p><p>Second para with <a href="#top">a jump</a>.</p>
            <h1>Usage</h1><ul><li>one</li><li>two</li></ul>
            <table><tr><td>cell1</td><td>cell2</td></tr></table></body></html>"##;
        let p = parse(html.as_bytes()).expect("html");
        assert_eq!(p.title.as_deref(), Some("Guide"));
        let parts: Vec<(&str, &str)> = p
            .blocks
            .iter()
            .map(|b| (b.heading.as_str(), b.text.as_str()))
            .collect();
        assert!(
            parts.contains(&("Install", "Run the setup tool.")),
            "{parts:?}"
        );
        assert!(
            parts.contains(&("Install > Linux", "Use apt.")),
            "{parts:?}"
        );
        assert!(
            parts
                .iter()
                .any(|(h, t)| *h == "Usage" && t.contains("- one")),
            "{parts:?}"
        );
        assert!(
            parts
                .iter()
                .any(|(_, t)| t.contains("cell1") && t.contains("cell2")),
            "{parts:?}"
        );
        let all: String = p.blocks.iter().map(|b| b.text.as_str()).collect();
        assert!(!all.contains("hidden") && !all.contains("color"), "{all}");
        assert!(!all.contains(HEADING_MARK));
        let targets: Vec<&str> = p.links.iter().map(|l| l.target.as_str()).collect();
        assert_eq!(targets, ["https://example.org/setup"]);
        // Without a <title>, the first h1 names the page.
        let p = parse(b"<h2>Sub</h2><h1>Main &amp; more</h1><p>x</p>").expect("html");
        assert_eq!(p.title.as_deref(), Some("Main & more"));
    }
}
