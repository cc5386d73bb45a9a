//! The WebSocket upgrade, done on hyper directly rather than with warp's `ws()` filter
//! (which would give every socket tokio-tungstenite's 128 KiB read buffer): the socket then
//! goes to our own frame reader ([`super::reader`]) and outbox ([`super::io`]).

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::io::Outbox;
use super::session::{self, SessionParams};
use crate::api::{json_error, with_header};
use crate::hub::Encoding;
use crate::limits::Limit;
use crate::state::AppState;
use crate::wire::{SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK};

/// Why an upgrade request was refused before it became a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Draining,
    ServerFull,
    BadHandshake(&'static str),
    /// `Sec-WebSocket-Version` other than 13 (or none): 426, naming the version we speak.
    Version,
    MethodNotAllowed,
    Origin,
    Subprotocol,
    RateLimited,
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Refusal::Draining | Refusal::ServerFull => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::BadHandshake(_) | Refusal::Subprotocol => StatusCode::BAD_REQUEST,
            Refusal::Version => StatusCode::UPGRADE_REQUIRED,
            Refusal::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::Origin => StatusCode::FORBIDDEN,
            Refusal::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Refusal::Draining => "draining",
            Refusal::ServerFull => "server_full",
            Refusal::BadHandshake(_) | Refusal::Version => "bad_handshake",
            Refusal::MethodNotAllowed => "method_not_allowed",
            Refusal::Origin => "origin_not_allowed",
            Refusal::Subprotocol => "unsupported_subprotocol",
            Refusal::RateLimited => "rate_limited",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::Draining => "this gateway is draining; connect to another one",
            Refusal::ServerFull => "this gateway is at its connection limit",
            Refusal::BadHandshake(why) => why,
            Refusal::Version => "`Sec-WebSocket-Version` must be 13",
            Refusal::MethodNotAllowed => "WebSocket upgrades use GET",
            Refusal::Origin => "this Origin is not allowed",
            Refusal::Subprotocol => {
                "supported subprotocols: pushfleet.v1.json, pushfleet.v1.msgpack"
            }
            Refusal::RateLimited => "too many new connections from this address; retry shortly",
        }
    }

    /// A header the refusal must carry: the version we speak with 426 (RFC 6455 §4.4), the
    /// method we answer with 405 (RFC 9110 §15.5.6).
    fn header(self) -> Option<(http::header::HeaderName, &'static str)> {
        match self {
            Refusal::Version => Some((http::header::SEC_WEBSOCKET_VERSION, "13")),
            Refusal::MethodNotAllowed => Some((http::header::ALLOW, "GET")),
            _ => None,
        }
    }

    fn into_response(self) -> warp::reply::Response {
        let resp = json_error(self.status(), self.code(), self.message());
        match self.header() {
            Some((name, value)) => with_header(resp, name, value),
            None => resp,
        }
    }
}

fn header_has_token(headers: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Picks the first subprotocol the client offers that we speak. No header: JSON.
fn negotiate(headers: &HeaderMap) -> Result<Option<(Encoding, &'static str)>, Refusal> {
    let offered: Vec<&str> = headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok(None);
    }
    offered
        .iter()
        .find_map(|p| match *p {
            SUBPROTOCOL_JSON => Some((Encoding::Json, SUBPROTOCOL_JSON)),
            SUBPROTOCOL_MSGPACK => Some((Encoding::Msgpack, SUBPROTOCOL_MSGPACK)),
            _ => None,
        })
        .map(Some)
        .ok_or(Refusal::Subprotocol)
}

fn check_handshake(req: &Request<Incoming>) -> Result<(), Refusal> {
    if req.method() != Method::GET {
        return Err(Refusal::MethodNotAllowed);
    }
    let h = req.headers();
    if !header_has_token(h, http::header::UPGRADE, "websocket") {
        return Err(Refusal::BadHandshake("missing `Upgrade: websocket`"));
    }
    if !header_has_token(h, http::header::CONNECTION, "upgrade") {
        return Err(Refusal::BadHandshake("missing `Connection: upgrade`"));
    }
    if h.get(http::header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err(Refusal::Version);
    }
    match h.get(http::header::SEC_WEBSOCKET_KEY) {
        None => Err(Refusal::BadHandshake("missing `Sec-WebSocket-Key`")),
        Some(key) if !is_websocket_key(key.as_bytes()) => Err(Refusal::BadHandshake(
            "`Sec-WebSocket-Key` must be 16 bytes in base64 (24 characters)",
        )),
        Some(_) => Ok(()),
    }
}

/// RFC 6455 §4.2.1: the key is 16 bytes in base64, i.e. 22 characters of its alphabet and
/// `==` (a header value comes without the whitespace around it).
fn is_websocket_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), Refusal> {
    let allowed = &state.cfg.allowed_origins;
    match headers
        .get(http::header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    {
        // Non-browser clients send no Origin; an empty list allows every origin.
        None => Ok(()),
        Some(_) if allowed.is_empty() => Ok(()),
        Some(o) if allowed.iter().any(|a| a.eq_ignore_ascii_case(o)) => Ok(()),
        Some(_) => Err(Refusal::Origin),
    }
}

/// Query parameters of `/ws`: `channels=a,b` (repeatable) and `token=…`.
fn parse_query(query: Option<&str>) -> (Vec<String>, Option<String>) {
    let mut channels = Vec::new();
    let mut token = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "channels" => channels.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            ),
            "token" => token = Some(v.into_owned()),
            _ => {}
        }
    }
    (channels, token)
}

/// Answers a `GET /ws` request: 101 and a spawned session, or an HTTP error with a JSON
/// body. Never blocks: the session starts once hyper hands over the upgraded socket.
pub fn handle(
    state: Arc<AppState>,
    peer: IpAddr,
    mut req: Request<Incoming>,
) -> warp::reply::Response {
    match accept(&state, peer, &mut req) {
        Ok(resp) => resp,
        Err(refusal) => {
            let reason = match refusal {
                Refusal::BadHandshake(_)
                | Refusal::Version
                | Refusal::MethodNotAllowed
                | Refusal::Subprotocol => "bad_handshake",
                other => other.code(),
            };
            state
                .metrics
                .connections_rejected
                .get_or_create(&[("reason", reason)])
                .inc();
            refusal.into_response()
        }
    }
}

fn accept(
    state: &Arc<AppState>,
    peer: IpAddr,
    req: &mut Request<Incoming>,
) -> Result<warp::reply::Response, Refusal> {
    if state.is_draining() {
        return Err(Refusal::Draining);
    }
    check_handshake(req)?;
    let client = crate::proxy::client_ip(peer, req.headers(), &state.cfg.trusted_proxies);
    // Logs a refusal by `limit`, naming the flag (at most a line per limit every 10 s).
    let refused = |limit| state.limit_log.refused(limit, &state.cfg, Some(client));
    check_origin(state, req.headers()).inspect_err(|_| refused(Limit::Origin))?;
    let protocol = negotiate(req.headers())?;
    if !state.connect_limiter.allow(client) {
        refused(Limit::ConnectRate);
        return Err(Refusal::RateLimited);
    }
    let permit = state.conn_limit.clone().try_acquire_owned().map_err(|_| {
        refused(Limit::Connections);
        Refusal::ServerFull
    })?;
    let key = req
        .headers()
        .get(http::header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()))
        .ok_or(Refusal::BadHandshake("missing `Sec-WebSocket-Key`"))?;
    let (channels, token) = parse_query(req.uri().query());
    // A bad token still completes the upgrade, so a browser sees close code 1008.
    let identity = match state.auth.verify(token.as_deref()) {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::debug!(error = %e, %client, "connect token refused");
            None
        }
    };
    let params = SessionParams {
        encoding: protocol.map_or(Encoding::Json, |p| p.0),
        channels,
        identity,
    };
    let on_upgrade = hyper::upgrade::on(req);
    let state = state.clone();
    let task = async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        // Take the TCP socket back from hyper, so frames are written to it directly. Bytes
        // hyper read past the request are kept (copied, so hyper's 8 KiB read buffer is
        // freed rather than held for the life of the connection).
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let hyper::upgrade::Parts { io, read_buf, .. } = parts;
                let prefix = Bytes::copy_from_slice(&read_buf);
                // Not held until the session ends: this frees hyper's buffer now.
                drop(read_buf);
                let (out, r) = Outbox::tcp(io.into_inner(), state.cfg.queue_frames);
                session::run(r, prefix, out, state, params).await;
            }
            Err(_) => {
                // Our own accept loop always hands hyper a TcpStream.
                tracing::error!("upgraded connection is not a TCP stream; dropping it");
            }
        }
        drop(permit);
    };
    // What each connection costs in task memory (see docs/PERFORMANCE.md).
    tracing::trace!(bytes = std::mem::size_of_val(&task), "connection task");
    tokio::spawn(task);

    let mut resp = warp::reply::Response::default();
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
    h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&key) {
        h.insert(http::header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some((_, name)) = protocol {
        h.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(name),
        );
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_channels() {
        let (chs, token) = parse_query(Some("channels=a,b%3Ac&token=x%2By&channels=d"));
        assert_eq!(chs, ["a", "b:c", "d"]);
        assert_eq!(token.as_deref(), Some("x+y"));
        assert!(parse_query(None).0.is_empty());
        assert!(parse_query(Some("channels=")).0.is_empty());
    }

    #[test]
    fn websocket_keys() {
        // RFC 6455's example key, and 16 bytes of 0xff.
        assert!(is_websocket_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(is_websocket_key(b"/////////////////////w=="));
        for bad in [
            &b""[..],
            b"short",
            b"dGhlIHNhbXBsZSBub25jZQ",
            b"dGhlIHNhbXBsZSBub25jZQ==x",
            b"dGhlIHNhbXBsZSBub25jZ===",
            b"dGhlIHNhbXBsZSBub25jZ.==",
            b"dGhlIHNhbXBsZSBub25jZQ=",
        ] {
            assert!(!is_websocket_key(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn subprotocols() {
        let mut h = HeaderMap::new();
        assert_eq!(negotiate(&h), Ok(None));
        h.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("x, pushfleet.v1.msgpack, pushfleet.v1.json"),
        );
        assert_eq!(negotiate(&h).unwrap().unwrap().0, Encoding::Msgpack);
        h.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("chat"),
        );
        assert_eq!(negotiate(&h), Err(Refusal::Subprotocol));
    }
}
