//! JSON over HTTP(S): one POST under a timeout, optionally HMAC-signed, its answer sorted
//! into delivered, retry (honouring `Retry-After`) or failed.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::Outcome;

/// Longest `Retry-After` honoured; a longer one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The headers of a signed body: `X-Fabric-Timestamp` (epoch ms) and `X-Fabric-Signature`
/// = `sha256=` + hex HMAC-SHA256 of `"<timestamp>.<body>"` under `secret`.
pub fn signature(secret: &str, timestamp_ms: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(timestamp_ms.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Reads `Retry-After`: delay seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let d = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
            let ms = at.timestamp_millis() - chrono::Utc::now().timestamp_millis();
            Duration::from_millis(u64::try_from(ms).unwrap_or(0))
        }
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// POSTs `body` to `url`.
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    secret: Option<&str>,
    timeout: Duration,
) -> Outcome {
    let bytes = match serde_json::to_vec(body) {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(format!("cannot encode: {e}")),
    };
    let mut req = client
        .post(url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if let Some(secret) = secret {
        let ts = chrono::Utc::now().timestamp_millis();
        req = req
            .header("X-Fabric-Timestamp", ts.to_string())
            .header("X-Fabric-Signature", signature(secret, ts, &bytes));
    }
    let resp = match req.body(bytes).send().await {
        Ok(r) => r,
        // The error's text names the URL: keep only its kind, as a Slack URL is a secret.
        Err(e) => {
            let kind = if e.is_timeout() {
                format!("timed out after {} ms", timeout.as_millis())
            } else if e.is_connect() {
                "cannot connect".to_string()
            } else {
                "request failed".to_string()
            };
            return Outcome::Retry {
                error: kind,
                after: None,
            };
        }
    };
    let status = resp.status();
    let after = retry_after(resp.headers());
    let text: String = resp
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    let detail = if text.trim().is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {}", status.as_u16(), text.trim())
    };
    if status.is_success() {
        Outcome::Delivered(detail)
    } else if status.as_u16() == 429 || status.as_u16() == 408 || status.is_server_error() {
        Outcome::Retry {
            error: detail,
            after,
        }
    } else {
        Outcome::Failed(detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates_and_is_capped() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(reqwest::header::RETRY_AFTER, "999999".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a past date");
    }

    #[test]
    fn signatures_cover_time_and_body() {
        let a = signature("k", 1, b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64, "{a}");
        assert_ne!(a, signature("k", 2, b"{}"));
        assert_ne!(a, signature("k", 1, b"{ }"));
        assert_ne!(a, signature("j", 1, b"{}"));
    }
}
