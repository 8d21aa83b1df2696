//! Generated corpora for `fabric bench ingest`: words drawn from a Zipf-distributed
//! vocabulary (so common and rare words occur as in real text), written as small notes,
//! mixed text-like files or tiny files, and synthetic documents for loading a large index.
//! Deterministic: the same seed writes the same bytes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use fabric_core::doc::{Chunk, DocType, NewDocument};

/// A small, fast, deterministic generator (xorshift64*); no cryptographic use.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

const SYLLABLES: [&str; 32] = [
    "ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "ve", "za", "bor", "dan", "fel", "gim", "hul",
    "jor", "kes", "lin", "mor", "nal", "pir", "qua", "rus", "sen", "tal", "urn", "vex", "wil",
    "yor", "zen", "ath", "ost",
];

/// Words of a vocabulary, sampled with Zipf's law (the word of rank r with weight 1/r).
pub struct Words {
    words: Vec<String>,
    /// Cumulative weights.
    cumulative: Vec<f64>,
}

impl Words {
    /// A vocabulary of `n` distinct words.
    pub fn new(n: usize) -> Self {
        let mut words = Vec::with_capacity(n);
        let mut cumulative = Vec::with_capacity(n);
        let mut total = 0.0;
        for i in 0..n {
            // Base-32 digits of i+1 as syllables: distinct words of 2–4 syllables.
            let mut w = String::new();
            let mut k = i + 32;
            while k > 0 {
                w.push_str(SYLLABLES[k % 32]);
                k /= 32;
            }
            words.push(w);
            total += 1.0 / (i + 1) as f64;
            cumulative.push(total);
        }
        Words { words, cumulative }
    }

    pub fn pick(&self, rng: &mut Rng) -> &str {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let i = self.cumulative.partition_point(|c| *c < x);
        &self.words[i.min(self.words.len() - 1)]
    }

    /// A word drawn uniformly from the vocabulary (rare and common alike).
    pub fn pick_uniform(&self, rng: &mut Rng) -> &str {
        &self.words[(rng.next() % self.words.len() as u64) as usize]
    }

    /// Roughly `bytes` of sentences.
    pub fn prose(&self, rng: &mut Rng, bytes: usize) -> String {
        let mut s = String::with_capacity(bytes + 64);
        let mut in_sentence = 0;
        while s.len() < bytes {
            let w = self.pick(rng);
            if in_sentence == 0 {
                let mut c = w.chars();
                if let Some(f) = c.next() {
                    s.extend(f.to_uppercase());
                    s.push_str(c.as_str());
                }
            } else {
                s.push_str(w);
            }
            in_sentence += 1;
            if in_sentence > 6 && rng.next().is_multiple_of(8) {
                s.push_str(". ");
                in_sentence = 0;
                if rng.next().is_multiple_of(5) {
                    s.push_str("\n\n");
                }
            } else {
                s.push(' ');
            }
        }
        s.push_str(".\n");
        s
    }
}

/// The directory of file `i` when files go `per` to a directory (`d000`, `d001`, ...),
/// created with its first file.
fn subdir(dir: &Path, i: usize, per: usize) -> std::io::Result<std::path::PathBuf> {
    let sub = dir.join(format!("d{:03}", i / per));
    if i.is_multiple_of(per) {
        std::fs::create_dir_all(&sub)?;
    }
    Ok(sub)
}

fn write(path: &Path, body: &[u8]) -> std::io::Result<u64> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(body)?;
    Ok(body.len() as u64)
}

/// `n` markdown notes of 1–4 KB (front matter on some, headings, tags, wikilinks) in
/// directories of 500; returns the bytes written.
pub fn notes(dir: &Path, n: usize, words: &Words, seed: u64) -> std::io::Result<u64> {
    let mut rng = Rng::new(seed);
    let mut total = 0;
    for i in 0..n {
        let sub = subdir(dir, i, 500)?;
        let size = rng.range(1024, 4096) as usize;
        let mut body = String::with_capacity(size + 256);
        if i % 3 == 0 {
            body.push_str(&format!(
                "---\ntitle: Note {i}\ntags: [{}]\n---\n",
                words.pick(&mut rng)
            ));
        }
        body.push_str(&format!("# Note {i} {}\n\n", words.pick(&mut rng)));
        let half = size / 2;
        body.push_str(&words.prose(&mut rng, half));
        body.push_str(&format!(
            "\n## More on {}\n\nSee [[note-{}]] and #{}.\n\n",
            words.pick(&mut rng),
            rng.range(0, n as u64),
            words.pick(&mut rng)
        ));
        let rest = size.saturating_sub(body.len());
        body.push_str(&words.prose(&mut rng, rest));
        total += write(&sub.join(format!("note-{i}.md")), body.as_bytes())?;
    }
    Ok(total)
}

/// About `mb` MiB of mixed text-like files averaging ~10 KB: markdown, code, plain text,
/// HTML, JSON and CSV in turn; returns the files and bytes written.
pub fn mixed(dir: &Path, mb: u64, words: &Words, seed: u64) -> std::io::Result<(u64, u64)> {
    let mut rng = Rng::new(seed);
    let target = mb * 1024 * 1024;
    let (mut files, mut total) = (0u64, 0u64);
    while total < target {
        let sub = subdir(dir, files as usize, 500)?;
        let size = rng.range(4 * 1024, 16 * 1024) as usize;
        let (ext, body) = match files % 6 {
            0 => ("md", {
                let mut b = format!("# {}\n\n", words.pick(&mut rng));
                while b.len() < size {
                    b.push_str(&format!("## {}\n\n", words.pick(&mut rng)));
                    b.push_str(&words.prose(&mut rng, 1500));
                    b.push('\n');
                }
                b
            }),
            1 => ("rs", {
                let mut b = String::from("//! Generated module.\n\n");
                let mut k = 0;
                while b.len() < size {
                    let name = words.pick(&mut rng).to_string();
                    b.push_str(&format!(
                        "/// {}\npub fn {name}_{k}(x: u64) -> u64 {{\n    let {name} = x * {k};\n    \
                         {name} + 1\n}}\n\n",
                        words.prose(&mut rng, 60).trim()
                    ));
                    k += 1;
                }
                b
            }),
            2 => ("txt", words.prose(&mut rng, size)),
            3 => ("html", {
                let mut b = format!(
                    "<!doctype html><html><head><title>{}</title></head><body>\n",
                    words.pick(&mut rng)
                );
                while b.len() < size {
                    b.push_str(&format!(
                        "<h2>{}</h2>\n<p>{}</p>\n<p><a href=\"page-{}.html\">{}</a></p>\n",
                        words.pick(&mut rng),
                        words.prose(&mut rng, 800).trim(),
                        rng.range(0, 1000),
                        words.pick(&mut rng)
                    ));
                }
                b.push_str("</body></html>\n");
                b
            }),
            4 => ("json", {
                let mut items = Vec::new();
                let mut len = 0;
                while len < size {
                    let text = words.prose(&mut rng, 200);
                    len += text.len() + 40;
                    items.push(
                        serde_json::json!({"id": items.len(), "name": words.pick(&mut rng),
                        "text": text}),
                    );
                }
                serde_json::to_string_pretty(&items).unwrap_or_default()
            }),
            _ => ("csv", {
                let mut b = String::from("id,name,comment\n");
                let mut k = 0;
                while b.len() < size {
                    b.push_str(&format!(
                        "{k},{},\"{}\"\n",
                        words.pick(&mut rng),
                        words.prose(&mut rng, 120).trim().replace('"', "'")
                    ));
                    k += 1;
                }
                b
            }),
        };
        total += write(&sub.join(format!("f{files}.{ext}")), body.as_bytes())?;
        files += 1;
    }
    Ok((files, total))
}

/// `n` mail messages in `files` mbox files: a third with ISO-8859-1 bodies, a third with an
/// RFC 2047 encoded-word subject and an HTML alternative, the rest plain UTF-8; returns the
/// bytes written.
pub fn mbox(dir: &Path, n: usize, files: usize, words: &Words, seed: u64) -> std::io::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let mut rng = Rng::new(seed);
    let files = files.max(1);
    let mut total = 0;
    for f in 0..files {
        let mut out: Vec<u8> = Vec::new();
        for i in (f..n).step_by(files) {
            let subject = format!("{} {}", words.pick(&mut rng), words.pick(&mut rng));
            let len = rng.range(300, 1500) as usize;
            let body = words.prose(&mut rng, len);
            out.extend_from_slice(
                format!(
                    "From sender{i}@example.org Tue Jul  1 10:00:00 2025\n\
                     From: Sender {i} <sender{i}@example.org>\n\
                     To: team@example.org\n\
                     Date: Tue, 1 Jul 2025 10:00:00 +0000\n\
                     Message-ID: <m{i}@example.org>\n"
                )
                .as_bytes(),
            );
            match i % 3 {
                0 => {
                    out.extend_from_slice(
                        format!(
                            "Subject: {subject}\nMIME-Version: 1.0\n\
                             Content-Type: text/plain; charset=ISO-8859-1\n\
                             Content-Transfer-Encoding: 8bit\n\n"
                        )
                        .as_bytes(),
                    );
                    // "Café" in Latin-1, then the body.
                    out.extend_from_slice(b"Caf\xe9 ");
                    out.extend_from_slice(body.as_bytes());
                }
                1 => {
                    out.extend_from_slice(
                        format!(
                            "Subject: =?UTF-8?Q?R=C3=A9sum=C3=A9_{}?=\nMIME-Version: 1.0\n\
                             Content-Type: multipart/alternative; boundary=\"b{i}\"\n\n\
                             --b{i}\nContent-Type: text/plain; charset=UTF-8\n\n{body}\n\
                             --b{i}\nContent-Type: text/html; charset=UTF-8\n\n\
                             <html><body><p>{body}</p></body></html>\n--b{i}--\n",
                            words.pick(&mut rng)
                        )
                        .as_bytes(),
                    );
                }
                _ => {
                    out.extend_from_slice(
                        format!(
                            "Subject: {subject}\nContent-Type: text/plain; charset=UTF-8\n\n{body}"
                        )
                        .as_bytes(),
                    );
                }
            }
            out.extend_from_slice(b"\n\n");
        }
        total += write(&dir.join(format!("box{f}.mbox")), &out)?;
    }
    Ok(total)
}

/// `n` PDF files of two pages with a text layer each (see
/// `fabric_ingest::untrusted::sample_pdf`); returns the bytes written.
pub fn pdfs(dir: &Path, n: usize, words: &Words, seed: u64) -> std::io::Result<u64> {
    let mut rng = Rng::new(seed);
    let mut total = 0;
    for i in 0..n {
        let sub = subdir(dir, i, 500)?;
        let pages: Vec<String> = (0..2)
            .map(|_| {
                (0..20)
                    .map(|_| words.prose(&mut rng, 60).trim().to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect();
        let refs: Vec<&str> = pages.iter().map(String::as_str).collect();
        let title = format!("Report {i}");
        let bytes = fabric_ingest::untrusted::sample_pdf(&title, &refs);
        total += write(&sub.join(format!("r{i}.pdf")), &bytes)?;
    }
    Ok(total)
}

/// `n` tiny text files (one line each) in directories of 1,000.
pub fn tiny(dir: &Path, n: usize, words: &Words, seed: u64) -> std::io::Result<u64> {
    let mut rng = Rng::new(seed);
    let mut total = 0;
    for i in 0..n {
        let sub = subdir(dir, i, 1000)?;
        let line = format!("{} {} {i}\n", words.pick(&mut rng), words.pick(&mut rng));
        total += write(&sub.join(format!("t{i}.txt")), line.as_bytes())?;
    }
    Ok(total)
}

/// Synthetic document `i` of source `source`: `chunks` chunks of about `chunk_bytes` each.
pub fn document(
    source: &str,
    i: u64,
    chunks: u32,
    chunk_bytes: usize,
    words: &Words,
    rng: &mut Rng,
) -> NewDocument {
    let path = format!("synthetic/{i}.md");
    let chunks: Vec<Chunk> = (0..chunks)
        .map(|ord| Chunk {
            key: format!("{path}#{ord}"),
            ord,
            heading: format!("Part {ord}"),
            text: words.prose(rng, chunk_bytes),
        })
        .collect();
    NewDocument {
        source: source.to_string(),
        path,
        doc_type: DocType::Markdown,
        title: format!("Synthetic {i}"),
        size: chunks.iter().map(|c| c.text.len() as u64).sum(),
        mtime: 0,
        hash: format!("synthetic-{i}"),
        tags: vec![],
        meta: BTreeMap::new(),
        links: vec![],
        chunks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vocabulary_is_distinct_and_sampling_favours_common_words() {
        let w = Words::new(5_000);
        let set: std::collections::HashSet<&String> = w.words.iter().collect();
        assert_eq!(set.len(), 5_000);
        let mut rng = Rng::new(7);
        let first = w.words[0].clone();
        let hits = (0..10_000).filter(|_| w.pick(&mut rng) == first).count();
        // Rank 1 of 5,000 under Zipf: about 1/H(5000) ≈ 11 % of draws.
        assert!((700..1600).contains(&hits), "{hits}");
    }

    #[test]
    fn generation_is_deterministic_and_sized() {
        let w = Words::new(1_000);
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let bytes = notes(a.path(), 20, &w, 3).unwrap();
        assert_eq!(notes(b.path(), 20, &w, 3).unwrap(), bytes);
        assert!((20 * 1024..=20 * 4600).contains(&bytes), "{bytes}");
        let one = std::fs::read(a.path().join("d000/note-7.md")).unwrap();
        assert_eq!(one, std::fs::read(b.path().join("d000/note-7.md")).unwrap());
        let (files, bytes) = mixed(&a.path().join("m"), 1, &w, 3).unwrap();
        assert!(bytes >= 1 << 20 && files >= 60, "{files} {bytes}");
    }
}
