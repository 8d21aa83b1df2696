//! Fabric's web console: server-rendered pages under `/ui` (overview, jobs, quarantine,
//! shards and nodes, sources and documents, batches, schedules, the bus, alerts, audit), live
//! through server-sent events, with its few assets compiled into the binary. Every page reads
//! and every action writes through the same `Console` the CLI and the API use; login takes
//! the API's tokens and their roles.

mod auth;
mod error;
mod layout;
mod live;
mod pages;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use fabric_engine::access::Access;
use fabric_engine::{Console, Metrics};

pub use error::UiError;

/// What the console is given by the daemon.
#[derive(Clone)]
pub struct UiDeps {
    pub console: Console,
    pub metrics: Metrics,
    /// The API's tokens; with none, the console is read-only for everyone.
    pub access: Access,
    pub bus: Option<Arc<dyn fabric_bus::Bus>>,
    pub max_body_bytes: usize,
}

/// The console's shared state: its dependencies, the login sessions and the live feed.
#[derive(Clone)]
pub struct UiState(Arc<Inner>);

struct Inner {
    deps: UiDeps,
    sessions: auth::Sessions,
    live: live::Live,
}

impl UiState {
    pub fn new(deps: UiDeps) -> Self {
        Self(Arc::new(Inner {
            deps,
            sessions: auth::Sessions::new(),
            live: live::Live::new(),
        }))
    }

    fn console(&self) -> &Console {
        &self.0.deps.console
    }
}

/// The console's routes, to be nested under `/ui`.
pub fn router(state: UiState) -> Router {
    let limit = state.0.deps.max_body_bytes;
    Router::new()
        .route("/", get(pages::overview::page))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/events", get(live::events))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
        .merge(pages::routes())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../assets/app.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../assets/app.js"),
    )
}
