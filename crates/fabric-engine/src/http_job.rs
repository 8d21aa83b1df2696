//! The built-in `http` job kind: one HTTP(S) request per attempt, its answer kept as the job's
//! result or sorted into a rate-limited (honouring `Retry-After`), transient or permanent
//! failure, with secret headers and URL parts redacted from what is kept.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use fabric_core::config::MAX_JOB_TIMEOUT_SECONDS;
use fabric_core::quarantine::{ErrorKind, Failure};
use fabric_core::Job;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Value};

use crate::handlers::{field_in, short, Handler, OUTPUT_TAIL};

mod redact;

pub use redact::{display_url, is_secret_name, REDACTED};
use redact::{kept_headers, scrub, secrets};

/// Timeout of a request whose payload sets no `timeout_s`.
pub const DEFAULT_TIMEOUT_S: u64 = 30;

/// The accepted methods.
const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

/// Bytes of a response body quoted in an error message.
const ERROR_BODY: usize = 256;

/// Sends `{"method", "url", "headers", "body", "timeout_s", "expect_status"}` and keeps
/// `{"status", "headers", "body", "body_truncated", "elapsed_ms"}` of the answer: the headers
/// with secrets redacted, the first 2 KiB of the body as text. A `429` is rate-limited (its
/// `Retry-After` sets the next attempt), a 5xx, a timeout or a connection error transient,
/// any other status outside `expect_status` (default: any 2xx) permanent.
#[derive(Default)]
pub struct Http {
    clients: tokio::sync::OnceCell<Clients>,
}

/// Most redirects followed.
const MAX_REDIRECTS: usize = 10;

/// Headers reqwest itself drops on a redirect to another host.
const DROPPED_ON_REDIRECT: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

struct Clients {
    /// Follows redirects anywhere (reqwest drops [`DROPPED_ON_REDIRECT`] on a change of host).
    any_host: reqwest::Client,
    /// Follows redirects on the same host and port only: for requests with other secret
    /// headers (`X-Api-Key`, …), which reqwest would send on to another host. The redirect
    /// itself is then the answer (a 3xx, a permanent failure unless expected).
    same_host: reqwest::Client,
}

/// A request as its payload describes it.
#[derive(Debug)]
struct Request {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Body>,
    timeout: Duration,
    expect: Vec<u16>,
}

#[derive(Debug)]
enum Body {
    Text(String),
    Json(Vec<u8>),
}

fn parse(payload: &Value) -> Result<Request, String> {
    if !payload.is_object() {
        return Err(format!(
            "payload must be a JSON object like {{\"url\": \"https://example.com/\"}}, got {}",
            short(payload)
        ));
    }
    let method = match payload.get("method") {
        None | Some(Value::Null) => Method::GET,
        Some(Value::String(m)) if METHODS.contains(&m.to_ascii_uppercase().as_str()) => {
            Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .map_err(|_| format!("payload.method '{m}' is not a method"))?
        }
        Some(other) => {
            return Err(format!(
                "payload.method must be one of {}, got {}",
                METHODS.join(", "),
                short(other)
            ))
        }
    };
    let url = match payload.get("url") {
        None | Some(Value::Null) => return Err("payload.url is required".into()),
        Some(Value::String(u)) => u,
        Some(other) => {
            return Err(format!(
                "payload.url must be a string, got {}",
                short(other)
            ))
        }
    };
    // The URL is not quoted: it may hold a password.
    let url = Url::parse(url).map_err(|e| format!("payload.url is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "payload.url must be http or https, got scheme '{}'",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("payload.url has no host".into());
    }
    let headers = parse_headers(payload)?;
    let body = match payload.get("body") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Body::Text(s.clone())),
        Some(v) => Some(Body::Json(v.to_string().into_bytes())),
    };
    let timeout_s = field_in(payload, "timeout_s", false, 1, MAX_JOB_TIMEOUT_SECONDS)?
        .unwrap_or(DEFAULT_TIMEOUT_S);
    Ok(Request {
        method,
        url,
        headers,
        body,
        timeout: Duration::from_secs(timeout_s),
        expect: parse_expect(payload)?,
    })
}

fn parse_headers(payload: &Value) -> Result<HeaderMap, String> {
    let map = match payload.get("headers") {
        None | Some(Value::Null) => return Ok(HeaderMap::new()),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(format!(
                "payload.headers must be an object of strings, got {}",
                short(other)
            ))
        }
    };
    let mut headers = HeaderMap::with_capacity(map.len());
    for (name, value) in map {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            format!(
                "payload.headers key '{}' is not a header name",
                name.escape_debug()
            )
        })?;
        let secret = is_secret_name(name);
        let text = value.as_str().ok_or_else(|| {
            let shown = if secret {
                REDACTED.to_string()
            } else {
                short(value)
            };
            format!("payload.headers.{name} must be a string, got {shown}")
        })?;
        let mut v = HeaderValue::from_str(text).map_err(|_| {
            format!("payload.headers.{name} is not a valid header value (a line break?)")
        })?;
        v.set_sensitive(secret);
        headers.append(header, v);
    }
    Ok(headers)
}

fn parse_expect(payload: &Value) -> Result<Vec<u16>, String> {
    let code = |v: &Value| {
        v.as_u64()
            .filter(|n| (100..=599).contains(n))
            .and_then(|n| u16::try_from(n).ok())
    };
    match payload.get("expect_status") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) if !list.is_empty() => list
            .iter()
            .enumerate()
            .map(|(i, v)| {
                code(v).ok_or_else(|| {
                    format!(
                        "payload.expect_status[{i}] must be a status code (100..599), got {}",
                        short(v)
                    )
                })
            })
            .collect(),
        Some(v) => code(v).map(|c| vec![c]).ok_or_else(|| {
            format!(
                "payload.expect_status must be a status code (100..599) or a non-empty list of \
                 them, got {}",
                short(v)
            )
        }),
    }
}

/// Reads `Retry-After` as of `now`: delay seconds or an HTTP date (IMF-fixdate, RFC 850 or
/// asctime); a date in the past is no delay.
pub fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "much later": the engine caps the delay.
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = DateTime::parse_from_rfc2822(v)
        .map(|d| d.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(v, "%A, %d-%b-%y %H:%M:%S GMT").map(|d| d.and_utc())
        })
        .or_else(|_| NaiveDateTime::parse_from_str(v, "%a %b %e %H:%M:%S %Y").map(|d| d.and_utc()))
        .ok()?;
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// Reads up to `limit` bytes of the body; `true` if there was more.
async fn read_head(
    resp: &mut reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut head = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = limit - head.len();
        if chunk.len() > room {
            head.extend_from_slice(&chunk[..room]);
            return Ok((head, true));
        }
        head.extend_from_slice(&chunk);
    }
    Ok((head, false))
}

/// Bytes as text; a character cut in two at the end is dropped.
fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(e) if e.error_len().is_none() => {
            String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned()
        }
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// An error and its causes, without the URL reqwest puts in (it may hold a secret).
fn causes(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        let s_text = s.to_string();
        if !out.ends_with(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        src = s.source();
    }
    out
}

/// A failure to get an answer at all.
fn send_failure(what: &str, e: reqwest::Error, timeout: Duration) -> Failure {
    if e.is_timeout() {
        Failure::of(
            ErrorKind::Timeout,
            format!("{what}: timed out after {} s", timeout.as_secs()),
        )
    } else if e.is_builder() {
        Failure {
            permanent: true,
            ..Failure::of(ErrorKind::BadInput, format!("{what}: {}", causes(e)))
        }
    } else if e.is_redirect() {
        Failure {
            permanent: true,
            ..Failure::of(ErrorKind::InvalidState, format!("{what}: {}", causes(e)))
        }
    } else if e.is_connect() {
        Failure::of(
            ErrorKind::Connector,
            format!("{what}: cannot connect: {}", causes(e)),
        )
    } else {
        Failure::of(
            ErrorKind::Connector,
            format!("{what}: request failed: {}", causes(e)),
        )
    }
}

/// A status outside `expect_status`: rate-limited (429), transient (5xx) or permanent.
fn status_failure(status: StatusCode, message: String, retry: Option<Duration>) -> Failure {
    let code = status.as_u16();
    let mut f = match code {
        // The status names the reason: 429 rate_limited; 502, 503, 504 (a gateway or a
        // service that did not answer in time) timeout, as the operator contract says.
        429 | 502..=504 => Failure::msg(message),
        500..=599 => Failure::of(ErrorKind::Dependency, message),
        // The status (not words in the URL) names the quarantine reason.
        404 => Failure::msg(message),
        401 | 403 | 407 => Failure::of(ErrorKind::Permission, message),
        400 | 413 | 414 | 415 | 422 => Failure::of(ErrorKind::BadInput, message),
        _ => Failure::of(ErrorKind::InvalidState, message),
    };
    f.status = Some(code);
    f.permanent = code != 429 && code < 500;
    if let Some(d) = retry {
        f = f.retry_after(d);
    }
    f
}

/// Whether a request with `headers` may follow a redirect to another host.
fn may_change_host(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .all(|name| !is_secret_name(name.as_str()) || DROPPED_ON_REDIRECT.contains(&name.as_str()))
}

impl Http {
    async fn client(&self, headers: &HeaderMap) -> Result<&reqwest::Client, Failure> {
        let build = |policy| {
            reqwest::Client::builder()
                .user_agent(concat!("fabric/", env!("CARGO_PKG_VERSION")))
                .redirect(policy)
                .build()
        };
        self.clients
            .get_or_try_init(|| async {
                let same_host = reqwest::redirect::Policy::custom(|attempt| {
                    let cross = attempt.previous().last().is_some_and(|prev| {
                        prev.host_str() != attempt.url().host_str()
                            || prev.port_or_known_default() != attempt.url().port_or_known_default()
                    });
                    if cross {
                        attempt.stop()
                    } else if attempt.previous().len() > MAX_REDIRECTS {
                        attempt.error("too many redirects")
                    } else {
                        attempt.follow()
                    }
                });
                Ok::<_, reqwest::Error>(Clients {
                    any_host: build(reqwest::redirect::Policy::limited(MAX_REDIRECTS))?,
                    same_host: build(same_host)?,
                })
            })
            .await
            .map(|c| {
                if may_change_host(headers) {
                    &c.any_host
                } else {
                    &c.same_host
                }
            })
            .map_err(|e| {
                Failure::of(
                    ErrorKind::Dependency,
                    format!("cannot set up the HTTP client: {}", causes(e)),
                )
            })
    }
}

#[async_trait]
impl Handler for Http {
    fn validate(&self, payload: &Value) -> Result<(), String> {
        parse(payload).map(|_| ())
    }

    fn timeout(&self, payload: &Value) -> Option<Duration> {
        parse(payload).ok().map(|r| r.timeout)
    }

    async fn run(&self, job: &Job) -> Result<Option<Value>, Failure> {
        let req = parse(&job.payload).map_err(|m| Failure {
            permanent: true,
            ..Failure::of(ErrorKind::BadInput, m)
        })?;
        let client = self.client(&req.headers).await?;
        let secrets = secrets(&req.headers, &req.url);
        let what = format!("{} {}", req.method, display_url(&req.url));
        let mut builder = client
            .request(req.method.clone(), req.url.clone())
            // A little under the engine's timeout for the job (also `timeout_s`), so the
            // message kept is this one, which names the request.
            .timeout(
                req.timeout
                    .saturating_sub(Duration::from_millis(100))
                    .max(Duration::from_millis(100)),
            )
            .headers(req.headers.clone());
        match req.body {
            Some(Body::Text(ref s)) => builder = builder.body(s.clone()),
            Some(Body::Json(ref bytes)) => {
                if !req.headers.contains_key(CONTENT_TYPE) {
                    builder = builder.header(CONTENT_TYPE, "application/json");
                }
                builder = builder.body(bytes.clone());
            }
            None => {}
        }
        let started = Instant::now();
        let mut resp = builder
            .send()
            .await
            .map_err(|e| send_failure(&what, e, req.timeout))?;
        let status = resp.status();
        let expected = if req.expect.is_empty() {
            status.is_success()
        } else {
            req.expect.contains(&status.as_u16())
        };
        if !expected {
            let retry = match status.as_u16() {
                429 | 503 => resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, Utc::now())),
                _ => None,
            };
            // The body is only quoted: a failure to read it does not change the outcome.
            let (head, cut) = read_head(&mut resp, ERROR_BODY).await.unwrap_or_default();
            let mut message = format!("{what} returned {status}");
            if let Some(d) = retry {
                let _ = write!(message, " (Retry-After {} s)", d.as_secs());
            }
            let body = text(&head);
            let body = body.trim();
            if !body.is_empty() {
                let _ = write!(message, ": {body}{}", if cut { "…" } else { "" });
            }
            return Err(status_failure(status, scrub(&message, &secrets), retry));
        }
        let headers = kept_headers(resp.headers(), &secrets);
        let (head, truncated) = read_head(&mut resp, OUTPUT_TAIL).await.map_err(|e| {
            let f = send_failure(&what, e, req.timeout);
            Failure {
                message: format!("{} (reading the body after {status})", f.message),
                ..f
            }
        })?;
        Ok(Some(json!({
            "status": status.as_u16(),
            "headers": headers,
            "body": scrub(&text(&head), &secrets),
            "body_truncated": truncated,
            "elapsed_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(payload: Value) -> String {
        Http::default().validate(&payload).unwrap_err()
    }

    #[test]
    fn payloads_name_the_bad_field() {
        let cases = [
            (json!("https://x"), "payload must be a JSON object"),
            (json!({}), "payload.url is required"),
            (json!({"url": 3}), "payload.url must be a string, got 3"),
            (json!({"url": "not a url"}), "payload.url is not a URL"),
            (
                json!({"url": "ftp://h/x"}),
                "payload.url must be http or https, got scheme 'ftp'",
            ),
            (
                json!({"url": "http://h", "method": "BREW"}),
                "payload.method must be one of GET, POST, PUT, PATCH, DELETE, HEAD, got \"BREW\"",
            ),
            (json!({"url": "http://h", "method": 1}), "payload.method"),
            (
                json!({"url": "http://h", "headers": ["A"]}),
                "payload.headers must be an object of strings",
            ),
            (
                json!({"url": "http://h", "headers": {"X-N": 1}}),
                "payload.headers.X-N must be a string, got 1",
            ),
            (
                json!({"url": "http://h", "headers": {"Authorization": 12345}}),
                "payload.headers.Authorization must be a string, got [redacted]",
            ),
            (
                json!({"url": "http://h", "headers": {"a b": "x"}}),
                "payload.headers key 'a b' is not a header name",
            ),
            (
                json!({"url": "http://h", "headers": {"X-A": "a\nb"}}),
                "payload.headers.X-A is not a valid header value",
            ),
            (
                json!({"url": "http://h", "timeout_s": 0}),
                "payload.timeout_s is 0, out of range 1..2592000",
            ),
            (
                json!({"url": "http://h", "timeout_s": MAX_JOB_TIMEOUT_SECONDS + 1}),
                "payload.timeout_s",
            ),
            (
                json!({"url": "http://h", "timeout_s": "5"}),
                "payload.timeout_s must be a non-negative integer",
            ),
            (
                json!({"url": "http://h", "expect_status": 99}),
                "payload.expect_status must be a status code (100..599) or a non-empty list",
            ),
            (
                json!({"url": "http://h", "expect_status": []}),
                "payload.expect_status must be",
            ),
            (
                json!({"url": "http://h", "expect_status": [200, "201"]}),
                "payload.expect_status[1] must be a status code (100..599), got \"201\"",
            ),
        ];
        for (payload, want) in cases {
            let e = err(payload.clone());
            assert!(e.contains(want), "{payload}: {e}");
        }
        // A bad URL is not quoted: it may hold a password.
        assert!(!err(json!({"url": "http://u:hunter2@[bad"})).contains("hunter2"));
    }

    #[test]
    fn defaults_and_good_payloads() {
        let h = Http::default();
        let r = parse(&json!({"url": "https://example.com/x"})).unwrap();
        assert_eq!(r.method, Method::GET);
        assert_eq!(r.timeout, Duration::from_secs(DEFAULT_TIMEOUT_S));
        assert!(r.expect.is_empty() && r.body.is_none() && r.headers.is_empty());
        assert_eq!(
            h.timeout(&json!({"url": "http://h", "timeout_s": 7})),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            h.timeout(&json!({"url": "http://h"})),
            Some(Duration::from_secs(30))
        );
        let r = parse(
            &json!({"url": "http://h", "method": "post", "body": {"a": 1},
                              "headers": {"X-A": "1"}, "expect_status": [200, 204]}),
        )
        .unwrap();
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.expect, vec![200, 204]);
        assert!(matches!(r.body, Some(Body::Json(ref b)) if b == br#"{"a":1}"#));
        let r = parse(&json!({"url": "http://h", "body": "raw", "expect_status": 503})).unwrap();
        assert!(matches!(r.body, Some(Body::Text(ref s)) if s == "raw"));
        assert_eq!(r.expect, vec![503]);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            retry_after("Wed Oct 21 07:28:30 2015", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Tue, 20 Oct 2015 07:28:00 GMT", now),
            Some(Duration::ZERO),
            "in the past"
        );
        assert!(retry_after("99999999999999999999999", now).is_some());
        for bad in ["", "soon", "-5", "1.5", "12 s"] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn statuses_are_classified() {
        use fabric_core::quarantine::QuarantineReason as R;
        use fabric_core::retry::FailureType as T;
        let f = |code: u16| {
            status_failure(
                StatusCode::from_u16(code).unwrap(),
                "GET http://h/state/parse".into(),
                None,
            )
        };
        assert_eq!(f(429).failure_type(), T::RateLimited);
        assert_eq!(f(429).reason(), R::RateLimited);
        for code in [500, 502, 503, 504, 599] {
            assert_eq!(f(code).failure_type(), T::Transient, "{code}");
        }
        for code in [400, 401, 403, 404, 405, 409, 410, 422, 200, 301] {
            assert_eq!(f(code).failure_type(), T::Permanent, "{code}");
        }
        assert_eq!(f(404).reason(), R::PermissionDenied);
        assert_eq!(f(409).reason(), R::InvalidState);
        for code in [502, 503, 504] {
            assert_eq!(f(code).reason(), R::Timeout, "{code}");
        }
        assert_eq!(f(500).reason(), R::DependencyFailure);
        let later = status_failure(
            StatusCode::TOO_MANY_REQUESTS,
            "x".into(),
            Some(Duration::from_secs(3)),
        );
        assert_eq!(later.retry_after_ms, Some(3000));
    }

    #[test]
    fn text_drops_a_character_cut_in_two() {
        let s = "añb".as_bytes();
        assert_eq!(text(&s[..2]), "a");
        assert_eq!(text(s), "añb");
    }
}
