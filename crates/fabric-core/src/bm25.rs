//! BM25 as SQLite FTS5's `bm25()` computes it, over text tokenized the way FTS5's
//! `unicode61 remove_diacritics 2` tokenizer does. The SQLite store ranks a window of matches
//! with it because FTS5's own function first counts every row that holds each query term,
//! which costs tens of milliseconds for a word found in most of a million chunks; here the
//! caller supplies each term's document frequency (exact, or estimated from a sample).
//!
//! The formula, per row: `Σ idf(t) · f(t)·(k1+1) / (f(t) + k1·(1 − b + b·|D|/avgdl))`, where
//! `f(t)` sums the column weights of every occurrence of term `t` in the row, `|D|` is the
//! row's length in tokens (all columns) and `idf(t) = ln((N − n(t) + 0.5) / (n(t) + 0.5))`,
//! replaced by 1e-6 when not positive, exactly as FTS5 does.

use memchr::memmem::Finder;
use unicode_normalization::char::{decompose_canonical, is_combining_mark};

/// FTS5's `k1`.
pub const K1: f64 = 1.2;
/// FTS5's `b`.
pub const B: f64 = 0.75;

/// FTS5's inverse document frequency of a term found in `hits` of `rows` rows.
pub fn idf(rows: f64, hits: f64) -> f64 {
    let idf = ((rows - hits + 0.5) / (hits + 0.5)).ln();
    if idf > 0.0 {
        idf
    } else {
        1e-6
    }
}

/// Whether `c` is a precomposed Latin letter whose diacritics `remove_diacritics 2` strips
/// (FTS5 folds Latin script only).
fn latin_with_marks(c: char) -> bool {
    matches!(c, '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}')
}

/// Calls `f` with each token of `text` and whether it holds a non-ASCII character: runs of
/// letters and digits, a combining mark continuing a token. Tokens are not folded yet.
fn for_each_token(text: &str, mut f: impl FnMut(&str, bool)) {
    let bytes = text.as_bytes();
    let (mut i, mut start, mut wide) = (0, None, false);
    while i < bytes.len() {
        let b = bytes[i];
        let (token_char, len) = if b < 0x80 {
            (b.is_ascii_alphanumeric(), 1)
        } else {
            match text[i..].chars().next() {
                Some(c) => (is_combining_mark(c) || c.is_alphanumeric(), c.len_utf8()),
                None => break,
            }
        };
        if token_char {
            if start.is_none() {
                start = Some(i);
                wide = false;
            }
            wide |= b >= 0x80;
        } else if let Some(s) = start.take() {
            f(&text[s..i], wide);
        }
        i += len;
    }
    if let Some(s) = start {
        f(&text[s..], wide);
    }
}

/// `token` folded into `out` (cleared first): lower-cased, combining marks dropped, the
/// diacritics of Latin letters removed. Empty for a token of combining marks only.
fn fold(token: &str, out: &mut String) {
    out.clear();
    for c in token.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else if is_combining_mark(c) {
            // Dropped.
        } else if latin_with_marks(c) {
            decompose_canonical(c, |d| {
                if !is_combining_mark(d) {
                    out.extend(d.to_lowercase());
                }
            });
        } else {
            out.extend(c.to_lowercase());
        }
    }
}

/// The folded tokens of `text` (a query term: a word that tokenizes to several tokens is
/// matched as a phrase of them, as FTS5 does with a quoted string).
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut folded = String::new();
    for_each_token(text, |t, _| {
        fold(t, &mut folded);
        if !folded.is_empty() {
            out.push(folded.clone());
        }
    });
    out
}

/// A token that is no query token.
const OTHER: u16 = u16::MAX;

/// Tokens in ASCII text: runs of letters and digits.
fn ascii_token_count(text: &[u8]) -> usize {
    let mut n = 0;
    let mut prev = false;
    for &b in text {
        let tok = b.is_ascii_alphanumeric();
        n += usize::from(tok && !prev);
        prev = tok;
    }
    n
}

/// Adds `w` to `freq[p]` for each whole-token occurrence of `finders[p]`'s (lower-case,
/// ASCII) token in the ASCII `text`, searched in a lower-cased copy kept in `lower`; returns
/// the text's length in tokens.
fn count_ascii(
    finders: &[Finder<'static>],
    lower: &mut Vec<u8>,
    freq: &mut [f64],
    text: &[u8],
    w: f64,
) -> usize {
    lower.clear();
    lower.extend(text.iter().map(u8::to_ascii_lowercase));
    for (p, finder) in finders.iter().enumerate() {
        let len = finder.needle().len();
        let whole = |at: usize| {
            (at == 0 || !lower[at - 1].is_ascii_alphanumeric())
                && lower
                    .get(at + len)
                    .is_none_or(|b| !b.is_ascii_alphanumeric())
        };
        let hits = finder.find_iter(lower).filter(|&at| whole(at)).count();
        freq[p] += w * hits as f64;
    }
    ascii_token_count(text)
}

/// Ranks rows for one query: its phrases (each a token list, from [`tokens`]), their IDFs,
/// the weight of each column and the collection's mean row length in tokens.
pub struct Ranker {
    /// The distinct query tokens.
    vocab: Vec<String>,
    /// Each phrase as indexes into `vocab`.
    phrases: Vec<Vec<u16>>,
    idf: Vec<f64>,
    weights: Vec<f64>,
    avgdl: f64,
    /// The current column as indexes into `vocab` ([`OTHER`] for any other token).
    ids: Vec<u16>,
    folded: String,
    freq: Vec<f64>,
    /// When every phrase is one ASCII token: a finder of each, for ASCII columns (counted by
    /// searching a lower-cased copy instead of tokenizing).
    finders: Option<Vec<Finder<'static>>>,
    lower: Vec<u8>,
}

impl Ranker {
    /// `idf[i]` belongs to `phrases[i]`; `avgdl` is total tokens over rows (all columns).
    pub fn new(phrases: Vec<Vec<String>>, idf: Vec<f64>, weights: &[f64], avgdl: f64) -> Self {
        let mut vocab: Vec<String> = Vec::new();
        let phrases = phrases
            .into_iter()
            .map(|p| {
                p.into_iter()
                    .map(|t| match vocab.iter().position(|v| *v == t) {
                        Some(i) => i as u16,
                        None => {
                            vocab.push(t);
                            (vocab.len() - 1) as u16
                        }
                    })
                    .collect()
            })
            .collect::<Vec<Vec<u16>>>();
        let n = phrases.len();
        let finders = phrases
            .iter()
            .map(|p| match p.as_slice() {
                [one]
                    if vocab[usize::from(*one)]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric()) =>
                {
                    Some(Finder::new(vocab[usize::from(*one)].as_bytes()).into_owned())
                }
                _ => None,
            })
            .collect();
        Self {
            vocab,
            phrases,
            idf,
            weights: weights.to_vec(),
            avgdl: if avgdl > 0.0 { avgdl } else { 1.0 },
            ids: Vec::new(),
            folded: String::new(),
            freq: vec![0.0; n],
            finders,
            lower: Vec::new(),
        }
    }

    /// Fills `ids` with the tokens of `text`.
    fn scan(&mut self, text: &str) {
        let Self {
            vocab, ids, folded, ..
        } = self;
        ids.clear();
        for_each_token(text, |t, wide| {
            let id = if wide {
                fold(t, folded);
                if folded.is_empty() {
                    return;
                }
                vocab.iter().position(|v| v == folded)
            } else {
                vocab
                    .iter()
                    .position(|v| v.len() == t.len() && v.eq_ignore_ascii_case(t))
            };
            ids.push(id.map_or(OTHER, |i| i as u16));
        });
    }

    /// The BM25 score of a row whose columns hold `columns` (in the order of the weights),
    /// higher is better. The row is known to match: a phrase this tokenizer does not find in
    /// it (a folding FTS5 does differently) counts as one occurrence.
    pub fn score(&mut self, columns: &[&str]) -> f64 {
        self.freq.iter_mut().for_each(|f| *f = 0.0);
        let mut row_len = 0usize;
        for (c, text) in columns.iter().enumerate() {
            let w = self.weights.get(c).copied().unwrap_or(1.0);
            if let (Some(finders), true) = (&self.finders, text.is_ascii()) {
                row_len +=
                    count_ascii(finders, &mut self.lower, &mut self.freq, text.as_bytes(), w);
                continue;
            }
            self.scan(text);
            row_len += self.ids.len();
            for (p, phrase) in self.phrases.iter().enumerate() {
                let hits = match phrase.as_slice() {
                    [] => 0,
                    [one] => self.ids.iter().filter(|&&id| id == *one).count(),
                    many => self.ids.windows(many.len()).filter(|w| w == &many).count(),
                };
                self.freq[p] += w * hits as f64;
            }
        }
        let d = row_len as f64;
        self.freq
            .iter()
            .zip(&self.idf)
            .map(|(&f, &idf)| {
                let f = if f > 0.0 { f } else { 1.0 };
                idf * (f * (K1 + 1.0)) / (f + K1 * (1.0 - B + B * d / self.avgdl))
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_fold_case_and_latin_diacritics_and_split_on_punctuation() {
        assert_eq!(
            tokens("Naïve CAFÉ, a:b x-y 東京 Ünïcödé"),
            ["naive", "cafe", "a", "b", "x", "y", "東京", "unicode"]
        );
        assert_eq!(tokens("cafe\u{301} ok"), ["cafe", "ok"]);
        assert!(tokens("*** -- ::").is_empty());
    }

    #[test]
    fn idf_is_fts5s_and_never_below_a_millionth() {
        assert!((idf(1000.0, 10.0) - (990.5f64 / 10.5).ln()).abs() < 1e-12);
        assert_eq!(idf(1000.0, 600.0), 1e-6);
    }

    #[test]
    fn more_occurrences_in_a_shorter_row_score_higher_and_headings_weigh_their_weight() {
        let mut r = Ranker::new(vec![tokens("zebra")], vec![2.0], &[2.0, 1.0], 10.0);
        let dense = r.score(&["", "zebra zebra zebra grazing"]);
        let sparse = r.score(&["", "one zebra among lions elephants giraffes and birds"]);
        assert!(dense > sparse, "{dense} {sparse}");
        let heading = r.score(&["zebra", "lions"]);
        let body = r.score(&["lions", "zebra"]);
        assert!(heading > body, "{heading} {body}");
        // f = 2 (heading weight), |D| = 2, avgdl 10.
        let want = 2.0 * (2.0 * 2.2) / (2.0 + 1.2 * (0.25 + 0.75 * 0.2));
        assert!((heading - want).abs() < 1e-12, "{heading} {want}");
    }

    #[test]
    fn a_phrase_counts_its_tokens_in_order_only() {
        let mut r = Ranker::new(vec![tokens("zebra appears")], vec![1.0], &[1.0], 5.0);
        let a = r.score(&["the zebra appears and a zebra appears"]);
        let b = r.score(&["the zebra appears"]);
        assert!(a > b, "{a} {b}");
        // Whole tokens only, in any case (`_` separates): f = 4, |D| = 6.
        let mut r = Ranker::new(vec![tokens("zebra")], vec![1.0], &[1.0], 5.0);
        let want = (4.0 * 2.2) / (4.0 + 1.2 * (0.25 + 0.75 * 6.0 / 5.0));
        let got = r.score(&["Zebra, ZEBRA! xzebra zebrax zebra_zebra"]);
        assert!((got - want).abs() < 1e-12, "{got} {want}");
        // The ASCII search and the tokenizer (taken for non-ASCII text) agree: one more token
        // each, ASCII or not.
        let ascii = r.score(&["Zebra, ZEBRA! xzebra zebrax zebra_zebra e"]);
        let wide = r.score(&["Zebra, ZEBRA! xzebra zebrax zebra_zebra é"]);
        assert!((ascii - wide).abs() < 1e-12, "{ascii} {wide}");
        // Folded tokens count as FTS5 counts them.
        let mut r = Ranker::new(vec![tokens("Cafe")], vec![1.0], &[1.0], 5.0);
        assert!(r.score(&["CAFÉ café x"]) > r.score(&["cafe y z"]));
        let mut r = Ranker::new(vec![tokens("zebra appears")], vec![1.0], &[1.0], 5.0);
        // Not found in order: counted once (the store only ranks rows FTS5 matched).
        assert_eq!(r.score(&["appears zebra"]), r.score(&["zebra appears"]));
    }
}
