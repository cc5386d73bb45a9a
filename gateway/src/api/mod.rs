//! HTTP routes (warp): health and readiness on the public listener; publish and metrics
//! on the internal one. Every error is a JSON body `{"error":{"code","message"}}`.

pub mod publish;

use std::convert::Infallible;
use std::sync::Arc;

use http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::bus::BusError;
use crate::state::AppState;
use crate::wire::{ChannelError, HttpErrorBody, HttpErrorDetail};

/// A JSON error response.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = HttpErrorBody {
        error: HttpErrorDetail {
            code: code.to_owned(),
            message: message.to_owned(),
        },
    };
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

/// `resp` with header `name: value` added: what an error must carry besides its body (the
/// `Allow` of a 405, the `Sec-WebSocket-Version` of a 426).
pub fn with_header(
    mut resp: Response,
    name: http::header::HeaderName,
    value: &'static str,
) -> Response {
    resp.headers_mut()
        .insert(name, http::HeaderValue::from_static(value));
    resp
}

/// Everything the HTTP API can answer with besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or wrong API key (send `Authorization: Bearer <key>`)")]
    Unauthorized,
    #[error("the body must be JSON (`Content-Type: application/json`)")]
    UnsupportedMediaType,
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the body could not be read")]
    BodyRead,
    /// The body is not JSON, or JSON of none of the publish forms ([`publish::bad_json`]).
    #[error("{0}")]
    BadJson(String),
    #[error(transparent)]
    InvalidChannel(#[from] ChannelError),
    #[error("{0}")]
    BadRequest(&'static str),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("no such route")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl ApiError {
    /// HTTP status; exhaustive so a new variant must choose one.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyRead
            | ApiError::BadJson(_)
            | ApiError::InvalidChannel(_)
            | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Bus(BusError::Unavailable) | ApiError::Bus(BusError::Timeout(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::BodyRead => "bad_body",
            ApiError::BadJson(_) => "bad_json",
            ApiError::InvalidChannel(_) => "invalid_channel",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Bus(_) => "bus_unavailable",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
        }
    }

    pub fn into_response(self) -> Response {
        json_error(self.status(), self.code(), &self.to_string())
    }
}

/// Turns warp's rejections into JSON errors.
async fn recover(r: Rejection) -> Result<Response, Infallible> {
    let err = if r.is_not_found() {
        ApiError::NotFound
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        // Only for a route not built with `resource`, which answers its own 405s with the
        // `Allow` this one cannot know; every route today is.
        ApiError::MethodNotAllowed
    } else {
        ApiError::BadRequest("malformed request")
    };
    Ok(err.into_response())
}

/// Methods a resource answers, as its 405's `Allow` header lists them.
const GET_HEAD: &str = "GET, HEAD";

/// The resource at `path`: `handler` (which filters the methods it answers), and for any
/// other method 405 with the `Allow: allow` header RFC 9110 §15.5.6 requires (warp's own
/// 405 has none, and cannot know the path's methods).
fn resource<P, H>(
    path: P,
    allow: &'static str,
    handler: H,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone
where
    P: Filter<Extract = (), Error = Rejection> + Clone + Send + Sync,
    H: Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync,
{
    path.and(
        handler
            .or(warp::any().map(move || {
                with_header(
                    ApiError::MethodNotAllowed.into_response(),
                    http::header::ALLOW,
                    allow,
                )
            }))
            .unify(),
    )
}

/// GET, or HEAD for the same resource (RFC 9110 §9.1: a server supports both; hyper
/// sends a HEAD answer's headers without its body). Monitors and load balancers probe
/// with either.
fn get_or_head() -> impl Filter<Extract = (), Error = Rejection> + Copy {
    warp::get().or(warp::head()).unify()
}

fn health(state: Arc<AppState>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let healthz = resource(
        warp::path!("healthz"),
        GET_HEAD,
        get_or_head()
            .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})).into_response()),
    );
    let readyz = get_or_head().map(move || {
        let (status, text) = match (state.is_draining(), state.bus.is_ready()) {
            (true, _) => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
            (false, false) => (StatusCode::SERVICE_UNAVAILABLE, "bus_unavailable"),
            (false, true) => (StatusCode::OK, "ready"),
        };
        let body = serde_json::json!({"status": text, "bus": state.bus.kind()});
        warp::reply::with_status(warp::reply::json(&body), status).into_response()
    });
    healthz
        .or(resource(warp::path!("readyz"), GET_HEAD, readyz))
        .unify()
}

/// Routes of the public listener (besides `/ws`, which the server handles before warp).
pub fn public_routes(
    state: Arc<AppState>,
    internal: std::net::SocketAddr,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let page: Arc<str> = crate::assets::index_html(internal).into();
    let index = resource(
        warp::path::end(),
        GET_HEAD,
        get_or_head().map(move || {
            warp::reply::with_header(
                warp::reply::html(page.to_string()),
                "cache-control",
                "no-cache",
            )
            .into_response()
        }),
    );
    // A static file at `/<name>`, never cached (it changes with the gateway's version).
    let script = |name: &'static str, body: &'static str, ctype: &'static str| {
        let file = get_or_head().map(move || {
            let r = warp::reply::with_header(body, "content-type", ctype);
            warp::reply::with_header(r, "cache-control", "no-cache").into_response()
        });
        resource(warp::path(name).and(warp::path::end()), GET_HEAD, file)
    };
    let client_js = script(
        "client.js",
        crate::assets::CLIENT_JS,
        "text/javascript; charset=utf-8",
    );
    let client_dts = script(
        "client.d.ts",
        crate::assets::CLIENT_DTS,
        "application/typescript; charset=utf-8",
    );
    health(state)
        .or(index)
        .unify()
        .or(client_js)
        .unify()
        .or(client_dts)
        .unify()
        .recover(recover)
        .unify()
}

/// Routes of the internal listener.
pub fn internal_routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let metrics_state = state.clone();
    let metrics = get_or_head().map(move || {
        warp::reply::with_header(
            metrics_state.metrics.render(),
            "content-type",
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .into_response()
    });
    let metrics = resource(warp::path!("metrics"), GET_HEAD, metrics);
    resource(
        warp::path!("api" / "publish"),
        "POST",
        publish::route(state.clone()),
    )
    .or(metrics)
    .unify()
    .or(health(state))
    .unify()
    .recover(recover)
    .unify()
}
