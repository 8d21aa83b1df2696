//! Mail messages into documents: [`parse_message`] turns the bytes of one RFC 5322 message
//! (a maildir file, one message of an mbox) into a [`DocType::Email`] document with
//! `mail-parser`: the title is the decoded Subject, `meta` keeps the headers (from, to, cc,
//! date, message_id, in_reply_to, attachments), the text comes from the text and HTML parts
//! decoded from their charsets, and In-Reply-To and References become `reply` links.
//!
//! A pure function of its input (no I/O, `Send`), so the isolated extractor can run it as is.

use std::collections::BTreeMap;

use fabric_core::doc::{DocLink, DocType, NewDocument};
use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders};
use serde_json::Value;

use crate::chunk::{chunk_blocks, Block};
use crate::error::ExtractError;
use crate::extract::paragraphs;
use crate::{FileMeta, Limits};

/// The title of a message without a Subject.
pub const NO_SUBJECT: &str = "(no subject)";

/// `Name <address>` for each address, comma-separated (groups flattened).
fn addresses(a: Option<&Address<'_>>) -> Option<String> {
    let list: Vec<String> = a?
        .iter()
        .filter_map(|addr| match (addr.name(), addr.address()) {
            (Some(n), Some(e)) if !n.trim().is_empty() => Some(format!("{} <{e}>", n.trim())),
            (_, Some(e)) => Some(e.to_string()),
            (Some(n), None) => Some(n.trim().to_string()),
            (None, None) => None,
        })
        .collect();
    (!list.is_empty()).then(|| list.join(", "))
}

/// The message ids of an In-Reply-To or References header, without angle brackets.
fn message_ids(v: &HeaderValue<'_>) -> Vec<String> {
    let raw: Vec<&str> = match v {
        HeaderValue::Text(t) => vec![t.as_ref()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.as_ref()).collect(),
        _ => Vec::new(),
    };
    raw.into_iter()
        .flat_map(|s| s.split_whitespace())
        .map(|s| s.trim_matches(|c| c == '<' || c == '>' || c == ','))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// An RFC 5322 field name: printable ASCII but `:`, at least one character.
fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// Parses one mail message into a document (see the module doc).
///
/// `path` names the document (a maildir message's stable name, an mbox's `FILE#<message-id>`);
/// `meta.hash` is BLAKE3 of `bytes` (computed when empty); a zero `meta.mtime_ms` takes the
/// Date header's. Over `limits.max_bytes` is [`ExtractError::TooLarge`]; input without a
/// single well-formed header is [`ExtractError::Parse`].
pub fn parse_message(
    source: &str,
    path: &str,
    bytes: &[u8],
    meta: FileMeta,
    limits: &Limits,
) -> Result<NewDocument, ExtractError> {
    let size = bytes.len() as u64;
    limits.check_size(size)?;
    let msg = MessageParser::default()
        .parse(bytes)
        .filter(|m| m.headers().iter().any(|h| is_field_name(h.name())))
        .ok_or_else(|| ExtractError::Parse("not a mail message: no header found".into()))?;

    let subject = msg
        .subject()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let mut fields: BTreeMap<String, Value> = BTreeMap::new();
    let mut header_lines = Vec::new();
    if let Some(s) = &subject {
        header_lines.push(format!("Subject: {s}"));
    }
    for (key, label, value) in [
        ("from", "From", addresses(msg.from())),
        ("to", "To", addresses(msg.to())),
        ("cc", "Cc", addresses(msg.cc())),
    ] {
        if let Some(v) = value {
            header_lines.push(format!("{label}: {v}"));
            fields.insert(key.into(), Value::from(v));
        }
    }
    let date = msg.date().cloned();
    if let Some(d) = &date {
        fields.insert("date".into(), Value::from(d.to_rfc3339()));
        header_lines.push(format!("Date: {}", d.to_rfc3339()));
    }
    if let Some(id) = msg.message_id() {
        fields.insert("message_id".into(), Value::from(id));
    }
    let in_reply_to = message_ids(msg.in_reply_to());
    if let Some(first) = in_reply_to.first() {
        fields.insert("in_reply_to".into(), Value::from(first.as_str()));
    }
    let attachments: Vec<String> = msg
        .attachments()
        .filter_map(|p| p.attachment_name().map(str::to_string))
        .collect();
    if !attachments.is_empty() {
        header_lines.push(format!("Attachments: {}", attachments.join(", ")));
        fields.insert("attachments".into(), Value::from(attachments));
    }

    let mut links: Vec<DocLink> = Vec::new();
    for id in in_reply_to.into_iter().chain(message_ids(msg.references())) {
        if !links.iter().any(|l| l.target == id) {
            links.push(DocLink {
                target: id,
                kind: "reply".into(),
            });
        }
    }

    let mut blocks = vec![Block::text("", header_lines.join("\n"))];
    for i in 0..msg.text_body_count() {
        if let Some(text) = msg.body_text(i) {
            blocks.extend(paragraphs(&text));
        }
    }
    let chunks = chunk_blocks(path, blocks, limits);
    let hash = if meta.hash.is_empty() {
        blake3::hash(bytes).to_hex().to_string()
    } else {
        meta.hash
    };
    let mtime = match (meta.mtime_ms, &date) {
        (0, Some(d)) => d.to_timestamp().saturating_mul(1000),
        (ms, _) => ms,
    };
    Ok(NewDocument {
        source: source.to_string(),
        path: path.to_string(),
        doc_type: DocType::Email,
        title: subject.unwrap_or_else(|| NO_SUBJECT.to_string()),
        size,
        mtime,
        hash,
        tags: Vec::new(),
        meta: fields,
        links,
        chunks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabric_core::quarantine::QuarantineReason;

    fn parse(bytes: &[u8]) -> Result<NewDocument, ExtractError> {
        parse_message("mail", "m1", bytes, FileMeta::default(), &Limits::default())
    }

    fn text(d: &NewDocument) -> String {
        d.chunks
            .iter()
            .map(|c| c.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn headers_become_title_meta_and_reply_links() {
        let raw = b"From: Ann Smith <ann@example.org>\r\nTo: bob@example.org, Cy <cy@example.org>\r\n\
Cc: dee@example.org\r\nSubject: =?UTF-8?B?Q2Fmw6kgbWVldGluZw==?=\r\nDate: Tue, 1 Jul 2025 10:00:00 +0200\r\n\
Message-ID: <abc@example.org>\r\nIn-Reply-To: <parent@example.org>\r\n\
References: <root@example.org> <parent@example.org>\r\n\r\nSee you there.\r\n";
        let d = parse(raw).expect("message");
        assert_eq!(d.doc_type, DocType::Email);
        assert_eq!(d.title, "Caf\u{e9} meeting");
        assert_eq!(d.meta["from"], "Ann Smith <ann@example.org>");
        assert_eq!(d.meta["to"], "bob@example.org, Cy <cy@example.org>");
        assert_eq!(d.meta["cc"], "dee@example.org");
        assert_eq!(d.meta["message_id"], "abc@example.org");
        assert_eq!(d.meta["in_reply_to"], "parent@example.org");
        assert_eq!(d.meta["date"], "2025-07-01T10:00:00+02:00");
        // Date header as mtime when the caller knows none.
        assert_eq!(d.mtime, 1_751_356_800_000);
        let targets: Vec<&str> = d.links.iter().map(|l| l.target.as_str()).collect();
        assert_eq!(targets, ["parent@example.org", "root@example.org"]);
        assert!(d.links.iter().all(|l| l.kind == "reply"));
        let t = text(&d);
        assert!(t.contains("See you there."), "{t}");
        assert!(t.contains("From: Ann Smith"), "{t}");
        assert_eq!(d.hash, blake3::hash(raw).to_hex().to_string());
    }

    #[test]
    fn latin1_bodies_are_decoded_and_html_parts_become_text() {
        let mut raw = b"From: a@b.c\nSubject: =?ISO-8859-1?Q?r=E9sum=E9?=\n\
MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"XX\"\n\n--XX\n\
Content-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: 8bit\n\n"
            .to_vec();
        raw.extend_from_slice(b"Le caf\xe9 est cr\xe9meux.\n");
        raw.extend_from_slice(
            b"--XX\nContent-Type: text/html; charset=UTF-8\n\n<p>Une <b>br\xc3\xbbl\xc3\xa9e</b></p>\n\
--XX\nContent-Type: application/pdf; name=\"plan.pdf\"\nContent-Disposition: attachment; \
filename=\"plan.pdf\"\nContent-Transfer-Encoding: base64\n\nJVBERi0=\n--XX--\n",
        );
        let d = parse(&raw).expect("message");
        assert_eq!(d.title, "r\u{e9}sum\u{e9}");
        let t = text(&d);
        assert!(t.contains("Le caf\u{e9} est cr\u{e9}meux."), "{t}");
        assert!(t.contains("br\u{fb}l\u{e9}e"), "{t}");
        assert!(!t.contains("<b>"), "{t}");
        assert_eq!(d.meta["attachments"], serde_json::json!(["plan.pdf"]));
        assert!(t.contains("Attachments: plan.pdf"), "{t}");
    }

    #[test]
    fn no_subject_no_headers_and_the_size_cap() {
        let d = parse(b"From: a@b.c\n\nbody only\n").expect("message");
        assert_eq!(d.title, NO_SUBJECT);
        assert!(d.links.is_empty());
        assert!(!d.meta.contains_key("message_id"));
        let e = parse(b"").expect_err("empty");
        assert_eq!(e.reason(), QuarantineReason::ParseError);
        let e = parse(b"\x00\x01\x02 no headers at all").expect_err("binary");
        assert_eq!(e.reason(), QuarantineReason::ParseError);
        let tiny = Limits {
            max_bytes: 4,
            ..Limits::default()
        };
        let e = parse_message("s", "p", b"From: a@b.c\n\nx", FileMeta::default(), &tiny)
            .expect_err("cap");
        assert_eq!(e.reason(), QuarantineReason::ResourceExhausted);
    }

    #[test]
    fn given_hash_and_mtime_are_kept_and_chunk_keys_are_stable() {
        let raw = b"Subject: s\nDate: Tue, 1 Jul 2025 10:00:00 +0000\n\nbody\n";
        let meta = FileMeta {
            size: 0,
            mtime_ms: 42,
            hash: "h".into(),
        };
        let a = parse_message("s", "p", raw, meta.clone(), &Limits::default()).expect("a");
        let b = parse_message("s", "p", raw, meta, &Limits::default()).expect("b");
        assert_eq!((a.mtime, a.hash.as_str()), (42, "h"));
        assert_eq!(a.chunks, b.chunks);
    }
}
