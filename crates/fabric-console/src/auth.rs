//! Who is looking: login with an API token into an HttpOnly, SameSite=Strict session cookie,
//! or the API's `Authorization: Bearer` header on any page; the CSRF token every form carries;
//! and the rule that only an admin token changes anything. With no token configured the
//! console is read-only for everyone and says so.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use fabric_core::config::TokenRole;
use fabric_engine::access::{constant_time_eq, Principal};
use fabric_engine::Console;
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::UiError;
use crate::layout;
use crate::UiState;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "fabric_session";
/// The sign-in form's CSRF token, before there is a session (a double-submit cookie: the
/// form's hidden field must equal it, which a page of another site cannot read or set).
const LOGIN_COOKIE: &str = "fabric_login";

/// How long a login lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

struct Session {
    principal: Principal,
    expires: Instant,
}

/// Login sessions (in memory: a restarted daemon asks everyone to sign in again), and the
/// key that derives each visitor's CSRF token.
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    key: [u8; 32],
}

impl Sessions {
    pub(crate) fn new() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            key: rand::random(),
        }
    }

    fn open(&self, principal: Principal) -> String {
        let id = hex(&rand::random::<[u8; 32]>());
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.expires > now);
        map.insert(
            id.clone(),
            Session {
                principal,
                expires: now + SESSION_TTL,
            },
        );
        id
    }

    fn get(&self, id: &str) -> Option<Principal> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id)
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.principal.clone())
    }

    fn close(&self, id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id);
    }

    /// The CSRF token of a visitor: a digest of the server's key and the session (or the
    /// bearer token's name), so it cannot be guessed and needs no storage.
    fn csrf(&self, of: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(of.as_bytes());
        hex(&h.finalize())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The visitor of a page: who they are, whether they may change things, and the CSRF token
/// their forms carry.
pub(crate) struct Viewer {
    pub principal: Principal,
    /// False when no token is configured (everyone reads, nobody changes anything).
    pub signed_in: bool,
    pub csrf: String,
    /// The Console acting as this visitor (the audit log's actor is their token's name).
    pub console: Console,
}

impl Viewer {
    pub(crate) fn can_act(&self) -> bool {
        self.signed_in && self.principal.is_admin()
    }

    /// The Console to act with, once the form's CSRF token matches and the role allows it.
    pub(crate) fn act(&self, form: &Fields) -> Result<&Console, UiError> {
        let given = form.get("csrf").unwrap_or("");
        if given.is_empty() || !constant_time_eq(given.as_bytes(), self.csrf.as_bytes()) {
            return Err(UiError::Csrf);
        }
        if !self.signed_in {
            return Err(UiError::Forbidden(
                "the console is read-only: no API token is configured (api.token or api.tokens)"
                    .into(),
            ));
        }
        if !self.principal.is_admin() {
            return Err(UiError::Forbidden(format!(
                "token '{}' has the {} role: it may look but not change anything",
                self.principal.name,
                self.principal.role_name()
            )));
        }
        Ok(&self.console)
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    fabric_engine::access::bearer(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

impl FromRequestParts<UiState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &UiState) -> Result<Self, Response> {
        let inner = &state.0;
        let access = &inner.deps.access;
        let configured = access.configured();
        let viewer = |principal: Principal, csrf_of: String, signed_in: bool| Viewer {
            console: inner.deps.console.as_actor(principal.name.clone()),
            csrf: inner.sessions.csrf(&csrf_of),
            principal,
            signed_in,
        };
        if let Some(given) = bearer(&parts.headers) {
            return match access.resolve(given) {
                Some(p) => {
                    let of = format!("bearer:{}", p.name);
                    Ok(viewer(p, of, true))
                }
                None => Err(UiError::Unauthorized.into_response()),
            };
        }
        if let Some(id) = cookie(&parts.headers, COOKIE) {
            if let Some(p) = inner.sessions.get(id) {
                let of = format!("session:{id}");
                return Ok(viewer(p, of, true));
            }
        }
        if !configured {
            let anonymous = Principal {
                name: "anonymous".into(),
                role: TokenRole::Read,
            };
            return Ok(viewer(anonymous, "anonymous".into(), false));
        }
        if parts.method == axum::http::Method::GET {
            // Nested under /ui, the request's own URI has lost its prefix; the original has it.
            let uri = parts
                .extensions
                .get::<axum::extract::OriginalUri>()
                .map(|o| &o.0)
                .unwrap_or(&parts.uri);
            let next = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/ui");
            let to = format!("/ui/login?next={}", layout::url_encode(next));
            return Err(Redirect::to(&to).into_response());
        }
        Err(UiError::Unauthorized.into_response())
    }
}

/// A submitted form's fields.
pub(crate) struct Fields(Vec<(String, String)>);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Fields {
    type Rejection = UiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, UiError> {
        Form::<Vec<(String, String)>>::from_request(req, state)
            .await
            .map(|Form(f)| Fields(f))
            .map_err(|e| UiError::invalid("form", e.body_text()))
    }
}

impl Fields {
    /// The field's value, if given and not blank.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Every non-blank value of a repeated field.
    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    pub(crate) fn required(&self, name: &str) -> Result<&str, UiError> {
        self.get(name)
            .ok_or_else(|| UiError::invalid(name, "is required"))
    }

    /// Where to go back to after the action: the form's `back`, if it is a console page.
    pub(crate) fn back(&self, default: &str) -> String {
        self.get("back")
            .filter(|b| b.starts_with("/ui") && !b.starts_with("//"))
            .unwrap_or(default)
            .to_string()
    }
}

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

/// `GET /ui/login`.
pub(crate) async fn login_page(
    State(state): State<UiState>,
    Query(q): Query<LoginQuery>,
) -> Response {
    login_form(&state, q.next.as_deref(), None, StatusCode::OK)
}

fn login_form(
    state: &UiState,
    next: Option<&str>,
    error: Option<&str>,
    code: StatusCode,
) -> Response {
    let configured = state.0.deps.access.configured();
    let csrf = hex(&rand::random::<[u8; 16]>());
    let login_cookie =
        format!("{LOGIN_COOKIE}={csrf}; Path=/ui/login; HttpOnly; SameSite=Strict; Max-Age=3600");
    let body = html! {
        main.narrow {
            h1 { "Sign in to Fabric" }
            @if !configured {
                p.banner.readonly { "No API token is configured (api.token or api.tokens): the console is read-only for everyone. " a href="/ui" { "Open it" } }
            }
            @if let Some(e) = error { p.error-message role="alert" { (e) } }
            form method="post" action="/ui/login" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(next.unwrap_or("/ui"));
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button type="submit" { "Sign in" }
            }
            p.hint { "Any token of api.token or api.tokens. A read token sees everything and changes nothing." }
        }
    };
    (
        code,
        [(header::SET_COOKIE, login_cookie)],
        layout::bare("Sign in", body),
    )
        .into_response()
}

/// `POST /ui/login`: `token`, `csrf` (the sign-in form's, equal to its cookie) and `next`
/// as a form.
pub(crate) async fn login(
    State(state): State<UiState>,
    headers: HeaderMap,
    form: Fields,
) -> Response {
    let next = form
        .get("next")
        .filter(|n| n.starts_with("/ui") && !n.starts_with("//"))
        .unwrap_or("/ui")
        .to_string();
    let given = form.get("csrf").unwrap_or("");
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        let why = "The sign-in form's CSRF token is missing or wrong (an old page, or a form \
                   of another site): sign in again here.";
        return login_form(&state, Some(&next), Some(why), StatusCode::FORBIDDEN);
    }
    let Some(principal) = form
        .get("token")
        .and_then(|t| state.0.deps.access.resolve(t))
    else {
        let why = if state.0.deps.access.configured() {
            "That token is not one of api.token or api.tokens."
        } else {
            "No API token is configured: there is nothing to sign in with."
        };
        return login_form(&state, Some(&next), Some(why), StatusCode::UNAUTHORIZED);
    };
    let console = state.console().as_actor(principal.name.clone());
    if let Err(e) = console
        .record("ui.login", principal.role_name(), None)
        .await
    {
        tracing::warn!(error = %e, "could not audit a console login");
    }
    let id = state.0.sessions.open(principal);
    let cookie = format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
}

/// `POST /ui/logout`.
pub(crate) async fn logout(
    State(state): State<UiState>,
    headers: HeaderMap,
    viewer: Viewer,
    form: Fields,
) -> Result<Response, UiError> {
    let given = form.get("csrf").unwrap_or("");
    if !constant_time_eq(given.as_bytes(), viewer.csrf.as_bytes()) {
        return Err(UiError::Csrf);
    }
    if let Some(id) = cookie(&headers, COOKIE) {
        state.0.sessions.close(id);
    }
    let clear = format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok(([(header::SET_COOKIE, clear)], Redirect::to("/ui/login")).into_response())
}
