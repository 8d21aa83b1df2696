//! Real receivers for the tests: an HTTP server on a port of its own that records every
//! request and answers from a script, and an SMTP sink speaking enough SMTP for `lettre`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Request {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

/// Answers still to give: status and Retry-After.
type Script = Arc<Mutex<VecDeque<(u16, Option<&'static str>)>>>;

/// An HTTP receiver: every POST is recorded; the answers come from `script` (status,
/// Retry-After), then 200.
#[derive(Clone)]
pub struct Http {
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    script: Script,
}

impl Http {
    pub async fn start() -> Self {
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let script: Script = Arc::default();
        let (r, s) = (requests.clone(), script.clone());
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let (r, s) = (r.clone(), s.clone());
                async move {
                    r.lock().unwrap().push(Request {
                        path: uri.path().to_string(),
                        headers,
                        body: body.to_vec(),
                    });
                    let (code, retry_after) = s.lock().unwrap().pop_front().unwrap_or((200, None));
                    let mut h = HeaderMap::new();
                    if let Some(ra) = retry_after {
                        h.insert("retry-after", ra.parse().unwrap());
                    }
                    (StatusCode::from_u16(code).unwrap(), h, "ok").into_response()
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url,
            requests,
            script,
        }
    }

    /// Answers the next requests with these statuses (and Retry-After values).
    pub fn answer(&self, answers: &[(u16, Option<&'static str>)]) {
        self.script.lock().unwrap().extend(answers.iter().copied());
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.requests().iter().map(Request::json).collect()
    }
}

/// A message the SMTP sink took.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// An SMTP sink on a port of its own: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
#[derive(Clone)]
pub struct Smtp {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl Smtp {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let m = mails.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let m = m.clone();
                tokio::spawn(async move {
                    let (rd, mut wr) = sock.into_split();
                    let mut lines = BufReader::new(rd).lines();
                    wr.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                    let (mut from, mut to) = (String::new(), Vec::new());
                    while let Ok(Some(line)) = lines.next_line().await {
                        let upper = line.to_ascii_uppercase();
                        let reply: &[u8] = if upper.starts_with("EHLO") {
                            b"250-sink\r\n250 8BITMIME\r\n"
                        } else if upper.starts_with("MAIL FROM:") {
                            from = line[10..].trim().to_string();
                            b"250 OK\r\n"
                        } else if upper.starts_with("RCPT TO:") {
                            to.push(line[8..].trim().to_string());
                            b"250 OK\r\n"
                        } else if upper == "DATA" {
                            wr.write_all(b"354 go ahead\r\n").await.unwrap();
                            let mut data = String::new();
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                                data.push_str(&l);
                                data.push('\n');
                            }
                            m.lock().unwrap().push(Mail {
                                from: std::mem::take(&mut from),
                                to: std::mem::take(&mut to),
                                data,
                            });
                            b"250 queued as 1\r\n"
                        } else if upper == "QUIT" {
                            let _ = wr.write_all(b"221 bye\r\n").await;
                            return;
                        } else {
                            b"250 OK\r\n"
                        };
                        if wr.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { port, mails }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}
