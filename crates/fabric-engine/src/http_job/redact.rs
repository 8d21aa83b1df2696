//! What the `http` kind redacts: secret-named headers and URL parameters, the URL's password,
//! and the request's secrets wherever the server echoes them into what is kept.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use reqwest::header::HeaderMap;
use reqwest::Url;

/// What a secret is shown as.
pub const REDACTED: &str = "[redacted]";

/// Longest response header value kept in a result.
const HEADER_VALUE_MAX: usize = 512;

/// Header and parameter names that are secrets whole.
const SECRET_NAMES: [&str; 7] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "key",
    "sig",
];

/// Words that make a header or parameter name a secret wherever they appear.
const SECRET_WORDS: [&str; 10] = [
    "token",
    "secret",
    "password",
    "passwd",
    "api-key",
    "apikey",
    "auth",
    "session",
    "signature",
    "credential",
];

/// Whether a header or URL parameter named `name` holds a secret (case-insensitive; `_` and
/// `-` alike).
pub fn is_secret_name(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase().replace('_', "-");
    SECRET_NAMES.contains(&n.as_str()) || SECRET_WORDS.iter().any(|w| n.contains(w))
}

/// Undoes `%XX` and `+` of a URL query part.
pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(v)) => {
                out.push(v);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` as messages show it: no fragment, the userinfo password and the values of
/// secret-named query parameters redacted.
pub fn display_url(url: &Url) -> String {
    let mut out = format!("{}://", url.scheme());
    if !url.username().is_empty() || url.password().is_some() {
        out.push_str(url.username());
        if url.password().is_some() {
            out.push(':');
            out.push_str(REDACTED);
        }
        out.push('@');
    }
    out.push_str(url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        let _ = write!(out, ":{port}");
    }
    out.push_str(url.path());
    if let Some(q) = url.query() {
        out.push('?');
        let params: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if is_secret_name(&percent_decode(k)) => format!("{k}={REDACTED}"),
                _ => p.to_string(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// The secret strings of a request (secret header values and the words in them, the URL's
/// password, the values of its secret parameters), longest first: what is scrubbed from
/// anything kept, should the server echo it.
pub(super) fn secrets(headers: &HeaderMap, url: &Url) -> Vec<String> {
    let mut out = Vec::new();
    for (name, value) in headers {
        if let (true, Ok(v)) = (is_secret_name(name.as_str()), value.to_str()) {
            out.push(v.to_string());
            out.extend(
                v.split_whitespace()
                    .filter(|w| w.len() >= 6)
                    .map(String::from),
            );
        }
    }
    if let Some(pw) = url.password() {
        out.push(pw.to_string());
        out.push(percent_decode(pw));
    }
    for (k, v) in url.query_pairs() {
        if is_secret_name(&k) {
            out.push(v.into_owned());
        }
    }
    if let Some(q) = url.query() {
        for p in q.split('&') {
            if let Some((k, v)) = p.split_once('=') {
                if is_secret_name(&percent_decode(k)) {
                    out.push(v.to_string());
                }
            }
        }
    }
    out.retain(|s| s.len() >= 4);
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

pub(super) fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    out
}

/// Response headers as a result keeps them: secret-named ones redacted, values of others
/// scrubbed of the request's secrets and cut to [`HEADER_VALUE_MAX`]; repeated ones joined.
pub(super) fn kept_headers(headers: &HeaderMap, secrets: &[String]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let v = if is_secret_name(name.as_str()) {
            REDACTED.to_string()
        } else {
            let v = scrub(&String::from_utf8_lossy(value.as_bytes()), secrets);
            v.chars().take(HEADER_VALUE_MAX).collect()
        };
        out.entry(name.as_str().to_string())
            .and_modify(|old| {
                if old != REDACTED {
                    old.push_str(", ");
                    old.push_str(&v);
                }
            })
            .or_insert(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn secret_names_and_urls_are_redacted() {
        for name in [
            "Authorization",
            "proxy-authorization",
            "Cookie",
            "Set-Cookie",
            "X-API-Key",
            "x_api_key",
            "X-Auth-Token",
            "X-Client-Secret",
            "db_password",
            "passwd",
            "ApiKey",
            "X-Session-Id",
            "X-Hub-Signature",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["Content-Type", "Accept", "X-Request-Id", "page"] {
            assert!(!is_secret_name(name), "{name}");
        }
        let url = Url::parse(
            "https://ann:hunter2@example.com:8443/a/b?page=2&api%5Fkey=k1&token=t1&x#frag",
        )
        .unwrap();
        assert_eq!(
            display_url(&url),
            "https://ann:[redacted]@example.com:8443/a/b?page=2&api%5Fkey=[redacted]&token=[redacted]&x"
        );
        let url = Url::parse("http://[::1]/?q=1").unwrap();
        assert_eq!(display_url(&url), "http://[::1]/?q=1");
        assert_eq!(percent_decode("api%5Fkey+x%+5%"), "api_key x% 5%");
    }

    #[test]
    fn echoed_secrets_are_scrubbed() {
        let url = Url::parse("http://u:pw-123456@h/?session=s-987654&api%5Fkey=k%2F2345").unwrap();
        let mut headers = HeaderMap::new();
        headers.append(
            "authorization",
            HeaderValue::from_static("Bearer tok-abcdef"),
        );
        headers.append("x-plain", HeaderValue::from_static("visible-value"));
        let s = secrets(&headers, &url);
        let echoed = "saw Bearer tok-abcdef, then tok-abcdef, pw-123456, s-987654, k/2345, \
                      k%2F2345, visible-value";
        assert_eq!(
            scrub(echoed, &s),
            "saw [redacted], then [redacted], [redacted], [redacted], [redacted], [redacted], \
             visible-value"
        );
        let mut headers = HeaderMap::new();
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        headers.append("x-echo", HeaderValue::from_static("tok-abcdef"));
        headers.append("vary", HeaderValue::from_static("a"));
        headers.append("vary", HeaderValue::from_static("b"));
        let kept = kept_headers(&headers, &s);
        assert_eq!(kept["set-cookie"], REDACTED);
        assert_eq!(kept["x-echo"], REDACTED);
        assert_eq!(kept["vary"], "a, b");
    }
}
