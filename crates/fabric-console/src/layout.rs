//! The page shell (navigation, who is signed in, the read-only banner) and the small pieces
//! every page uses: times, state badges, action forms with their CSRF token, URL encoding.

use fabric_core::JobState;
use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::auth::Viewer;

/// The sections of the navigation: (path, label).
const NAV: &[(&str, &str)] = &[
    ("/ui", "Overview"),
    ("/ui/jobs", "Jobs"),
    ("/ui/quarantine", "Quarantine"),
    ("/ui/shards", "Shards & nodes"),
    ("/ui/sources", "Sources"),
    ("/ui/docs", "Documents"),
    ("/ui/batches", "Batches"),
    ("/ui/schedules", "Schedules"),
    ("/ui/bus", "Bus"),
    ("/ui/alerts", "Alerts"),
    ("/ui/audit", "Audit"),
];

/// A full console page with the navigation, who is signed in, the read-only banner and the
/// banner of `msg`. The parts of `body` marked `data-live` follow the server's change events
/// (see `assets/app.js`).
pub(crate) fn page(
    viewer: &Viewer,
    title: &str,
    section: &str,
    msg: Option<&str>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf-token" content=(viewer.csrf);
                title { (title) " · Fabric" }
                link rel="stylesheet" href="/ui/assets/app.css";
                script src="/ui/assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/ui" { "Fabric" }
                    nav {
                        @for (path, label) in NAV {
                            a href=(path) class=[(*path == section).then_some("active")] { (label) }
                        }
                    }
                    div.who {
                        @if viewer.signed_in {
                            span #whoami { (viewer.principal.name) " (" (viewer.principal.role_name()) ")" }
                            form.inline method="post" action="/ui/logout" {
                                (csrf(viewer))
                                button.link type="submit" { "Sign out" }
                            }
                        } @else {
                            span #whoami { "anonymous" }
                        }
                        span #live-status title="Live updates" { "●" }
                    }
                }
                @if !viewer.signed_in {
                    p.banner.readonly #readonly { "Read-only: no API token is configured (api.token or api.tokens), so nothing can be changed here." }
                } @else if !viewer.can_act() {
                    p.banner.readonly #readonly { "Read-only: token '" (viewer.principal.name) "' has the " (viewer.principal.role_name()) " role; it sees everything and changes nothing." }
                }
                @if let Some(m) = msg { p.banner.done #flash role="status" { (m) } }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page without navigation (sign-in).
pub(crate) fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · Fabric" }
                link rel="stylesheet" href="/ui/assets/app.css";
            }
            body { (body) }
        }
    }
}

/// The hidden CSRF field of a form.
pub(crate) fn csrf(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}

/// A one-button form that POSTs to `action` and comes back to `back`; disabled for a
/// visitor who may not act.
pub(crate) fn button(
    viewer: &Viewer,
    action: &str,
    label: &str,
    back: &str,
    class: &str,
) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(viewer))
            input type="hidden" name="back" value=(back);
            button type="submit" class=(class) disabled[!viewer.can_act()] { (label) }
        }
    }
}

/// Pause (with a reason) or resume what `base` names (`/ui/shards/mars`), coming back to
/// `back`; the pause button's id is `pause-<name>`.
pub(crate) fn pause_toggle(viewer: &Viewer, base: &str, paused: bool, back: &str) -> Markup {
    let name = base.rsplit('/').next().unwrap_or(base);
    html! {
        @if paused {
            (button(viewer, &format!("{base}/resume"), "Resume", back, ""))
        } @else {
            form.inline method="post" action={(base) "/pause"} {
                (csrf(viewer))
                input type="hidden" name="back" value=(back);
                input name="reason" placeholder="reason" size="10";
                button type="submit" id={"pause-" (name)} disabled[!viewer.can_act()] { "Pause" }
            }
        }
    }
}

/// Epoch ms as RFC 3339 UTC, as the CLI prints times.
pub(crate) use fabric_core::time::format_ms as ts;

pub(crate) fn ts_opt(ms: Option<i64>) -> String {
    ms.map(ts).unwrap_or_default()
}

/// A duration in ms as `850 ms`, `12.3 s`, `4m 05s`.
pub(crate) fn duration(ms: i64) -> String {
    match ms {
        ..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60),
    }
}

pub(crate) fn state_badge(state: JobState) -> Markup {
    html! { span class={"state state-" (state.as_str())} { (state.as_str()) } }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `?a=1&b=2` from the pairs whose value is set.
pub(crate) fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| {
            v.filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", url_encode(v)))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Pretty JSON in a `<pre>`.
pub(crate) fn json(v: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    html! { pre.json { (text) } }
}

/// An inline SVG bar chart of `values` (newest last), `h` pixels high.
pub(crate) fn bars(id: &str, values: &[u64], h: u32, class: &str) -> Markup {
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let w = 4u32;
    let width = (values.len() as u32 * w).max(w);
    let mut rects = String::new();
    for (i, v) in values.iter().enumerate() {
        let bh = ((*v as f64 / max as f64) * h as f64).round() as u32;
        rects.push_str(&format!(
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}</title></rect>",
            i as u32 * w,
            h - bh,
            w - 1,
            bh,
            v
        ));
    }
    html! {
        svg id=(id) class={"chart " (class)} viewBox={"0 0 " (width) " " (h)} preserveAspectRatio="none" role="img" {
            (PreEscaped(rects))
        }
    }
}
