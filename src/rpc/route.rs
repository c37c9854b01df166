//! Where an HTTP request goes (Supervisor 4.1's handler order): answered by the server itself
//! (`/ok.html`, the static files, errors of method and path) or handed to the event loop
//! (XML-RPC, the pages, the log streams), and how large its body may be.

use std::net::SocketAddr;

use super::conn::{Request, Response};
use super::server::Incoming;
use super::web::{self, WebRequest};

/// The largest XML-RPC body accepted; larger ones get 413 before their body is read.
pub const MAX_RPC_BODY: usize = 8 << 20;

/// What a request handed to the loop waits for.
#[derive(Clone, Copy)]
pub(super) enum Waiting {
    Rpc,
    Web,
    /// `main`: the main log (`/mainlogtail`).
    Tail {
        main: bool,
    },
    /// `/mergedtail`.
    MergedTail,
}

/// The body limit of a request target.
pub(super) fn body_limit(target: &str) -> usize {
    if target.starts_with("/RPC2") {
        MAX_RPC_BODY
    } else {
        web::MAX_BODY
    }
}

pub(super) enum Routed {
    Answer(Response),
    Loop(Waiting, Incoming),
}

/// Where a request goes (4.1 handler order): answered here, or handed to the loop.
pub(super) fn route_request(req: Request, peer: Option<SocketAddr>) -> Routed {
    let is_get = req.method == "GET";
    match route(&req.target) {
        Route::Rpc if req.method != "POST" => Routed::Answer(Response::error(400)),
        Route::Rpc => Routed::Loop(Waiting::Rpc, Incoming::XmlRpc(req.body)),
        Route::Logtail { .. } | Route::MainLogtail if !is_get => Routed::Answer(Response::error(400)),
        Route::Logtail { namespec, channel } => {
            Routed::Loop(Waiting::Tail { main: false }, Incoming::Tail { namespec: Some(namespec), channel })
        }
        Route::MainLogtail => {
            Routed::Loop(Waiting::Tail { main: true }, Incoming::Tail { namespec: None, channel: "stdout".into() })
        }
        Route::MergedTail if !is_get => Routed::Answer(Response::error(400)),
        Route::MergedTail => {
            let query = req.target.split_once('?').map_or("", |(_, q)| q.split('#').next().unwrap_or(""));
            let mut names = Vec::new();
            let mut channel = None;
            for (k, v) in web::parse_form(query) {
                match k.as_str() {
                    "name" => names.push(v),
                    "channel" => channel = Some(v),
                    _ => {}
                }
            }
            Routed::Loop(Waiting::MergedTail, Incoming::MergedTail { names, channel })
        }
        Route::Ok => Routed::Answer(Response::new(200, "text/plain", "OK")),
        Route::Static if !is_get && req.method != "HEAD" => Routed::Answer(Response::error(400)),
        Route::Static => {
            let (ctype, body) = web::static_asset(uri_path(&req.target)).unwrap_or(("text/plain", b""));
            Routed::Answer(
                Response::new(200, ctype, body)
                    .with("Cache-Control", "max-age=300")
                    .with("X-Content-Type-Options", "nosniff"),
            )
        }
        Route::Web => {
            let path = uri_path(&req.target).to_string();
            let query =
                req.target.split_once('?').map(|(_, q)| q.split('#').next().unwrap_or("")).unwrap_or("").to_string();
            let headers =
                web::HEADERS.iter().filter_map(|h| req.header(h).map(|v| (h.to_string(), v.to_string()))).collect();
            let web_req = WebRequest {
                method: req.method,
                path,
                query,
                headers,
                body: req.body,
                peer: peer.map(|p| p.to_string()),
            };
            Routed::Loop(Waiting::Web, Incoming::Web(web_req))
        }
        Route::NotFound => Routed::Answer(Response::error(404)),
    }
}

/// Where a request goes (4.1 handler order).
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Rpc,
    Logtail {
        namespec: String,
        channel: String,
    },
    MainLogtail,
    /// `/mergedtail?name=...`: several logs in one stream (minisv).
    MergedTail,
    Ok,
    /// A page of `web` (status, tail, metrics, health, JSON API).
    Web,
    /// The stylesheet or script of the pages.
    Static,
    NotFound,
}

pub fn route(url: &str) -> Route {
    if url.starts_with("/RPC2") {
        return Route::Rpc;
    }
    if url.starts_with("/logtail") {
        return parse_logtail(url).unwrap_or(Route::NotFound);
    }
    if url.starts_with("/mainlogtail") {
        return Route::MainLogtail;
    }
    let path = uri_path(url);
    if path == "/mergedtail" {
        return Route::MergedTail;
    }
    if path == "/ok.html" {
        return Route::Ok;
    }
    if web::static_asset(path).is_some() {
        return Route::Static;
    }
    if web::route(path) != web::Page::NotFound {
        return Route::Web;
    }
    Route::NotFound
}

/// Medusa's `split_uri`: the path ends at `;`, `?` or `#`.
fn uri_path(url: &str) -> &str {
    url.split([';', '?', '#']).next().unwrap_or("")
}

/// `/logtail/<namespec>[/<channel>]` as Supervisor's `logtail_handler` reads it.
fn parse_logtail(url: &str) -> Option<Route> {
    let path = uri_path(url);
    let path = if path.contains('%') { unquote(path) } else { path.to_string() };
    let path = path.trim_start_matches('/');
    let (_, rest) = path.split_once('/')?;
    let (name, channel) = rest.split_once('/').unwrap_or((rest, "stdout"));
    Some(Route::Logtail { namespec: name.to_string(), channel: channel.to_string() })
}

/// Python's `urllib.parse.unquote`: `%xx` → byte, anything malformed kept, UTF-8 with
/// replacement characters.
pub fn unquote(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
