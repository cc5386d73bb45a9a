//! `POST /api/publish` (DESIGN §4.2).

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::StatusCode;
use subtle::ConstantTimeEq;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::ApiError;
use crate::bus::Outgoing;
use crate::hub::Channel;
use crate::state::AppState;
use crate::wire::{
    json_depth, validate_channel, PublishAccepted, PublishBody, BROADCAST, MAX_DATA_DEPTH,
};

/// `POST` of `/api/publish` (the path is [`super::internal_routes`]'s).
pub fn route(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::post()
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(move |headers, body| {
            let state = state.clone();
            async move {
                let result = publish(&state, &headers, body).await;
                let status = match &result {
                    Ok(_) => StatusCode::ACCEPTED,
                    Err(e) => e.status(),
                };
                state
                    .metrics
                    .publish_requests
                    .get_or_create(&[("status", status.as_u16().to_string())])
                    .inc();
                match result {
                    Ok(n) => warp::reply::with_status(
                        warp::reply::json(&PublishAccepted { published: n }),
                        StatusCode::ACCEPTED,
                    )
                    .into_response(),
                    Err(e) => e.into_response(),
                }
            }
        })
}

/// Constant-time check of `Authorization: Bearer <key>` against every configured key.
fn authorized(state: &AppState, headers: &http::HeaderMap) -> bool {
    let keys = &state.cfg.api_keys;
    if keys.is_empty() {
        return true;
    }
    // The scheme is case-insensitive (RFC 9110 §11.1): `bearer k` is as good as `Bearer k`.
    let Some(given) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key)
    else {
        return false;
    };
    // Compare with every key (no early exit), so timing says nothing about which matched.
    keys.iter().fold(false, |ok, k| {
        ok | bool::from(k.expose().as_bytes().ct_eq(given.trim().as_bytes()))
    })
}

fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim();
            m.eq_ignore_ascii_case("application/json")
                || (m.len() > 5 && m[m.len() - 5..].eq_ignore_ascii_case("+json"))
        })
}

/// Reads the body, refusing (413) as soon as it passes `max` bytes.
async fn read_limited<S, B>(body: S, max: usize, declared: Option<usize>) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    if declared.is_some_and(|n| n > max) {
        return Err(ApiError::PayloadTooLarge(max));
    }
    let mut out = BytesMut::with_capacity(declared.unwrap_or(1024).min(max));
    tokio::pin!(body);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| ApiError::BodyRead)?;
        if out.len() + chunk.remaining() > max {
            return Err(ApiError::PayloadTooLarge(max));
        }
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            out.extend_from_slice(piece);
            let n = piece.len();
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}

async fn publish<S, B>(
    state: &AppState,
    headers: &http::HeaderMap,
    body: S,
) -> Result<usize, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    if !authorized(state, headers) {
        return Err(ApiError::Unauthorized);
    }
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let bytes = read_limited(body, state.cfg.max_publish_bytes, declared).await?;
    let parsed: PublishBody<'_> = serde_json::from_slice(&bytes).map_err(bad_json)?;
    let mut out = Vec::new();
    expand(parsed, &mut out, false)?;
    Ok(state.bus.publish(out).await?)
}

/// A body serde_json refused: not JSON at all, or JSON that is none of the publish forms
/// (a string, an array, a field of the wrong type), which the answer tells apart.
pub(crate) fn bad_json(e: serde_json::Error) -> ApiError {
    ApiError::BadJson(match e.classify() {
        serde_json::error::Category::Data => {
            format!("the body is JSON but not a publish request: {e}")
        }
        _ => format!("the body is not valid JSON: {e}"),
    })
}

/// Flattens one body into (channel, data) pairs, validating as it goes.
pub fn expand(
    body: PublishBody<'_>,
    out: &mut Vec<Outgoing>,
    nested: bool,
) -> Result<(), ApiError> {
    let targets = usize::from(body.channel.is_some())
        + usize::from(body.channels.is_some())
        + usize::from(body.broadcast)
        + usize::from(body.messages.is_some());
    if targets != 1 {
        return Err(ApiError::BadRequest(
            "give exactly one of `channel`, `channels`, `broadcast: true` or `messages`",
        ));
    }
    if let Some(messages) = body.messages {
        if nested {
            return Err(ApiError::BadRequest(
                "`messages` entries cannot hold `messages`",
            ));
        }
        if messages.is_empty() {
            return Err(ApiError::BadRequest("`messages` is empty"));
        }
        for m in messages {
            expand(m, out, true)?;
        }
        return Ok(());
    }
    let data = body
        .data
        .ok_or(ApiError::BadRequest("`data` is required"))?;
    if json_depth(data.get().as_bytes()) > MAX_DATA_DEPTH {
        return Err(ApiError::BadRequest("`data` nests deeper than 64 levels"));
    }
    let data = Bytes::copy_from_slice(data.get().as_bytes());
    let mut push = |channel: Channel| {
        out.push(Outgoing {
            channel,
            data: data.clone(),
        })
    };
    if body.broadcast {
        push(Channel::from(BROADCAST));
    } else if let Some(ch) = body.channel {
        validate_channel(&ch)?;
        push(Channel::from(ch));
    } else if let Some(chs) = body.channels {
        if chs.is_empty() {
            return Err(ApiError::BadRequest("`channels` is empty"));
        }
        let mut seen: Vec<&str> = Vec::with_capacity(chs.len());
        for ch in &chs {
            validate_channel(ch)?;
            if !seen.contains(&ch.as_str()) {
                seen.push(ch);
            }
        }
        seen.into_iter().for_each(|c| push(Channel::from(c)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &str) -> Result<Vec<(String, String)>, ApiError> {
        let parsed: PublishBody<'_> = serde_json::from_str(body).map_err(bad_json)?;
        let mut out = Vec::new();
        expand(parsed, &mut out, false)?;
        Ok(out
            .into_iter()
            .map(|o| {
                (
                    o.channel.to_string(),
                    String::from_utf8(o.data.to_vec()).unwrap(),
                )
            })
            .collect())
    }

    #[test]
    fn four_forms() {
        assert_eq!(
            run(r#"{"channel":"a","data":{"x": 1}}"#).unwrap(),
            [("a".into(), r#"{"x": 1}"#.into())]
        );
        assert_eq!(
            run(r#"{"channels":["a","b","a"],"data":1}"#).unwrap().len(),
            2
        );
        assert_eq!(
            run(r#"{"broadcast":true,"data":null}"#).unwrap(),
            [("*".into(), "null".into())]
        );
        let many =
            run(r#"{"messages":[{"channel":"a","data":1},{"broadcast":true,"data":2}]}"#).unwrap();
        assert_eq!(many, [("a".into(), "1".into()), ("*".into(), "2".into())]);
    }

    #[test]
    fn bad_json_says_whether_the_body_is_json() {
        let message = |b: &str| run(b).unwrap_err().to_string();
        assert!(message("{").starts_with("the body is not valid JSON: "));
        let array = message(r#"[{"channel":"a","data":1}]"#);
        assert!(
            array.starts_with("the body is JSON but not a publish request: invalid type: sequence")
                && array.contains(r#"expected an object such as {"channel":"news","data":…}"#),
            "{array}"
        );
        assert!(message(r#"{"channel":1,"data":1}"#)
            .starts_with("the body is JSON but not a publish request: invalid type: integer"));
    }

    #[test]
    fn bad_bodies() {
        let code = |b: &str| run(b).unwrap_err().code();
        assert_eq!(code("{"), "bad_json");
        assert_eq!(code(r#"{"channel":"a b","data":1}"#), "invalid_channel");
        assert_eq!(code(r#"{"channel":"*","data":1}"#), "invalid_channel");
        assert_eq!(code(r#"{"channel":"a"}"#), "bad_request");
        assert_eq!(code(r#"{"data":1}"#), "bad_request");
        assert_eq!(
            code(r#"{"channel":"a","broadcast":true,"data":1}"#),
            "bad_request"
        );
        assert_eq!(code(r#"{"messages":[]}"#), "bad_request");
        assert_eq!(
            code(r#"{"messages":[{"messages":[{"channel":"a","data":1}]}]}"#),
            "bad_request"
        );
        assert_eq!(code(r#"[1]"#), "bad_json");
        // Arrays, at the top or in `messages`, are none of the forms, even where serde's
        // derive would read them by position.
        assert_eq!(code(r#"["a",null,false,1]"#), "bad_json");
        assert_eq!(code(r#"{"messages":[["a",null,false,1]]}"#), "bad_json");
        assert_eq!(code(r#"[{"channel":"a","data":1}]"#), "bad_json");
        assert_eq!(
            code(&format!("{}1{}", "[".repeat(500), "]".repeat(500))),
            "bad_json"
        );
    }
}
