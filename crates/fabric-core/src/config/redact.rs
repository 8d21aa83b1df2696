//! Masking of secrets for display: the password of every connection-string form the
//! PostgreSQL driver accepts, and every key named like a token, password or secret.

use serde_yaml_ng::Value;

use super::Config;

/// What a masked secret is shown as.
pub const MASK: &str = "********";

/// Words that make a key a secret wherever it appears (`api.token`, `…password`, `…secret`).
const SECRET_WORDS: [&str; 7] = [
    "token",
    "routing_key",
    "password",
    "passwd",
    "secret",
    "api_key",
    "credential",
];

/// Whether a key holds a secret. A `…_file` key names a file holding one: the path is shown.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    !k.ends_with("_file") && SECRET_WORDS.iter().any(|w| k.contains(w))
}

/// Masks the password of a URL: `postgres://user:pw@host/db` → `postgres://user:********@host/db`
/// (kept for callers that only ever hold URLs; see [`redact_conn_string`]).
pub fn redact_url(url: &str) -> String {
    redact_conn_string(url)
}

/// Masks every password in a PostgreSQL connection string: URLs (`user:pw@`, also with a raw
/// `@` inside the password, and `?password=` / `&sslpassword=` parameters) and key/value
/// strings (`host=h password=pw`, quoted or not). A key/value string that cannot be parsed but
/// mentions a password is masked whole: showing too little beats leaking.
pub fn redact_conn_string(s: &str) -> String {
    if let Some(scheme_end) = s.find("://") {
        let masked = mask_query_passwords(s);
        let (head, rest) = masked.split_at(scheme_end + 3);
        // The driver accepts a raw '@' in the password, so the userinfo ends at the last '@'.
        match rest.rfind('@') {
            Some(at) => match rest[..at].find(':') {
                Some(colon) => format!("{head}{}:{MASK}{}", &rest[..colon], &rest[at..]),
                None => masked.clone(),
            },
            None => masked.clone(),
        }
    } else if s.to_ascii_lowercase().contains("password") {
        mask_key_values(s).unwrap_or_else(|| MASK.to_string())
    } else {
        s.to_string()
    }
}

/// [`redact_conn_string`] for a value that is a connection string and nothing else
/// (`store.url`, `bus.url`): one that is neither a URL nor a key/value string the driver could
/// read (`user:pw@host/db`, a typo'd scheme) is masked whole, whatever it mentions.
pub fn redact_dsn(s: &str) -> String {
    if s.contains("://") {
        redact_conn_string(s)
    } else {
        mask_key_values(s).unwrap_or_else(|| MASK.to_string())
    }
}

/// Whether `s` reads as a libpq key/value string (`host=db dbname=x`): what a PostgreSQL
/// `store.url` is when it is not a `postgres://` URL.
pub(super) fn is_key_values(s: &str) -> bool {
    s.contains('=') && mask_key_values(s).is_some()
}

/// Is `key` (of a URL parameter or a key/value pair) a password?
fn is_password_key(key: &str) -> bool {
    let k = key.trim().to_ascii_lowercase();
    k == "password" || k == "sslpassword" || k == "passfile_password"
}

/// Masks the value of every `password=` parameter of a URL's query.
fn mask_query_passwords(url: &str) -> String {
    let Some(q) = url.find('?') else {
        return url.to_string();
    };
    let mut out = url[..=q].to_string();
    let params: Vec<String> = url[q + 1..]
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((k, _)) if is_password_key(k) => format!("{k}={MASK}"),
            _ => param.to_string(),
        })
        .collect();
    out.push_str(&params.join("&"));
    out
}

/// Masks password values of a libpq key/value string; `None` if it does not parse.
fn mask_key_values(s: &str) -> Option<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let key_start = i;
        while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
            i += 1;
        }
        let key: String = chars[key_start..i].iter().collect();
        // libpq's keywords are words: anything else (`user:pw@host/db?sslmode`) is no
        // key/value string.
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        let mut sep = String::new();
        while i < chars.len() && chars[i].is_whitespace() {
            sep.push(chars[i]);
            i += 1;
        }
        if chars.get(i) != Some(&'=') {
            return None;
        }
        sep.push('=');
        i += 1;
        while i < chars.len() && chars[i].is_whitespace() {
            sep.push(chars[i]);
            i += 1;
        }
        let value_start = i;
        if chars.get(i) == Some(&'\'') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => return None,
                    Some('\\') => i += 2,
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
        } else {
            while i < chars.len() && !chars[i].is_whitespace() {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
        }
        let end = i.min(chars.len());
        out.push_str(&key);
        out.push_str(&sep);
        if is_password_key(&key) {
            out.push_str(MASK);
        } else {
            out.extend(&chars[value_start..end]);
        }
    }
    Some(out)
}

/// Masks secrets in a serialized config: keys named like secrets, and passwords in any string
/// that looks like a connection string.
fn mask_value(v: &mut Value) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m.iter_mut() {
                let secret = k.as_str().is_some_and(is_secret_key);
                if secret && !child.is_null() {
                    *child = Value::String(MASK.into());
                } else {
                    mask_value(child);
                }
            }
        }
        Value::Sequence(s) => s.iter_mut().for_each(mask_value),
        Value::String(s) => *s = redact_conn_string(s),
        Value::Tagged(t) => mask_value(&mut t.value),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

impl Config {
    /// A copy with the known secrets (`store.url`'s password, `api.token`, the alert routes'
    /// keys, secrets, passwords and URL credentials) masked.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        if let Some(url) = &c.store.url {
            c.store.url = Some(redact_dsn(url));
        }
        if c.api.token.is_some() {
            c.api.token = Some(MASK.into());
        }
        c.alerts = c.alerts.redacted();
        c
    }

    /// The config as `config show` prints it, in file order: every key named like a token,
    /// password or secret masked, and the password of every connection string.
    pub fn display_value(&self) -> Value {
        let mut v = serde_yaml_ng::to_value(self.redacted()).unwrap_or(Value::Null);
        mask_value(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_string_form_is_masked() {
        let cases = [
            (
                "postgres://fab:pw@db:5432/x",
                "postgres://fab:********@db:5432/x",
            ),
            (
                "postgresql://fab:p@ss@w0rd@db/x",
                "postgresql://fab:********@db/x",
            ),
            (
                "postgres://fab@db/x?sslmode=require&password=pw&x=1",
                "postgres://fab@db/x?sslmode=require&password=********&x=1",
            ),
            (
                "postgres://db:5432/x?password=p@ss",
                "postgres://db:5432/x?password=********",
            ),
            (
                "host=db user=fab password=pw dbname=x",
                "host=db user=fab password=******** dbname=x",
            ),
            (
                "host=db password = 'a b\\' c' dbname=x",
                "host=db password = ******** dbname=x",
            ),
            ("host=db PASSWORD=pw", "host=db PASSWORD=********"),
            ("host=db password='unterminated", MASK),
            ("postgres://db/x", "postgres://db/x"),
            ("host=db dbname=x", "host=db dbname=x"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_conn_string(input), want, "{input}");
        }
    }

    #[test]
    fn keys_named_like_secrets_are_masked_and_file_paths_are_not() {
        assert!(is_secret_key("token"));
        assert!(is_secret_key("hmac_secret"));
        assert!(is_secret_key("smtp_password"));
        assert!(!is_secret_key("token_file"));
        assert!(!is_secret_key("listen"));
        let mut c = Config::default();
        c.api.token = Some("tok-123".into());
        c.api.token_file = Some("/etc/fabric/token".into());
        c.store.url = Some("host=db password=pw-456".into());
        let shown = serde_yaml_ng::to_string(&c.display_value()).unwrap_or_default();
        assert!(!shown.contains("tok-123"), "{shown}");
        assert!(!shown.contains("pw-456"), "{shown}");
        assert!(shown.contains("/etc/fabric/token"), "{shown}");
    }
}
