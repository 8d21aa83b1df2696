//! Email over SMTP with `lettre` (tokio, rustls): one message per group to every `to`
//! address, the whole send under the route's timeout.

use std::time::Duration;

use fabric_core::config::{RouteConfig, SmtpTls};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::Outcome;
use crate::message::{self, AlertInfo};

/// The message, or why it cannot be built (a bad address: not worth retrying).
fn build(route: &RouteConfig, alerts: &[AlertInfo]) -> Result<Message, String> {
    let from = route.from.as_deref().unwrap_or_default();
    let mut b = Message::builder()
        .from(from.parse().map_err(|e| format!("from '{from}': {e}"))?)
        .subject(message::title(alerts))
        .header(ContentType::TEXT_PLAIN);
    for to in &route.to {
        b = b.to(to.parse().map_err(|e| format!("to '{to}': {e}"))?);
    }
    b.body(message::text(alerts))
        .map_err(|e| format!("cannot build the message: {e}"))
}

fn transport(
    route: &RouteConfig,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let host = route.host.as_deref().unwrap_or_default();
    let params = || TlsParameters::new(host.to_string()).map_err(|e| format!("tls: {e}"));
    let tls = match route.tls.unwrap_or_default() {
        SmtpTls::None => Tls::None,
        SmtpTls::Opportunistic => Tls::Opportunistic(params()?),
        SmtpTls::Starttls => Tls::Required(params()?),
        SmtpTls::Tls => Tls::Wrapper(params()?),
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(route.port.unwrap_or(25))
        .tls(tls)
        .timeout(Some(timeout));
    if let (Some(user), Some(pass)) = (&route.username, &route.password) {
        b = b.credentials(Credentials::new(user.clone(), pass.clone()));
    }
    Ok(b.build())
}

/// Sends one message for `alerts`.
pub async fn send(route: &RouteConfig, alerts: &[AlertInfo], timeout: Duration) -> Outcome {
    let msg = match build(route, alerts) {
        Ok(m) => m,
        Err(e) => return Outcome::Failed(e),
    };
    let mailer = match transport(route, timeout) {
        Ok(m) => m,
        Err(e) => return Outcome::Failed(e),
    };
    match tokio::time::timeout(timeout, mailer.send(msg)).await {
        Err(_) => Outcome::Retry {
            error: format!("timed out after {} ms", timeout.as_millis()),
            after: None,
        },
        Ok(Ok(resp)) => Outcome::Delivered(format!(
            "{} {}",
            resp.code(),
            resp.message().collect::<Vec<_>>().join(" ")
        )),
        Ok(Err(e)) if e.is_permanent() => Outcome::Failed(format!("smtp: {e}")),
        Ok(Err(e)) => Outcome::Retry {
            error: format!("smtp: {e}"),
            after: None,
        },
    }
}
