//! Client commands: parsing, the per-connection rate limit, and the replies.

use std::sync::Arc;

use crate::auth::Identity;
use crate::hub::{Channel, ConnHandle};
use crate::state::AppState;
use crate::wire::{
    from_map, validate_channel, ClientCommand, ErrorCode, IdOnly, RequestId, ServerReply,
    COMMAND_FORM,
};

/// Decodes a command from a text (JSON) or binary (MessagePack) frame.
pub fn parse(payload: &[u8], binary: bool) -> Result<ClientCommand, ServerReply> {
    read_object::<ClientCommand>(payload, binary).map_err(|why| {
        let id = read_object::<IdOnly>(payload, binary)
            .ok()
            .and_then(|i| i.id);
        error(
            ErrorCode::BadRequest,
            format!("not a valid command ({why}); expected op subscribe, unsubscribe or ping"),
            id,
        )
    })
}

/// Reads a `T` from one JSON object (nothing after it) or one MessagePack map: serde's
/// derive alone would also take an array by position (`["subscribe",["news"]]` as a
/// subscribe, `["x"]` as the id of a failed command).
fn read_object<T: serde::de::DeserializeOwned>(payload: &[u8], binary: bool) -> Result<T, String> {
    if binary {
        let mut de = rmp_serde::Deserializer::from_read_ref(payload);
        from_map(&mut de, COMMAND_FORM).map_err(|e: rmp_serde::decode::Error| e.to_string())
    } else {
        let mut de = serde_json::Deserializer::from_slice(payload);
        from_map(&mut de, COMMAND_FORM)
            .and_then(|value| de.end().map(|()| value))
            .map_err(|e| e.to_string())
    }
}

pub fn error(code: ErrorCode, message: String, id: Option<RequestId>) -> ServerReply {
    ServerReply::Error { code, message, id }
}

/// Validates names; the first bad one is reported.
fn channels_of(names: &[String], id: &Option<RequestId>) -> Result<Vec<Channel>, ServerReply> {
    if names.is_empty() {
        return Err(error(
            ErrorCode::BadRequest,
            "`channels` must name at least one channel".into(),
            id.clone(),
        ));
    }
    let mut out: Vec<Channel> = Vec::with_capacity(names.len());
    for n in names {
        validate_channel(n)
            .map_err(|e| error(ErrorCode::InvalidChannel, e.to_string(), id.clone()))?;
        if !out.iter().any(|c| **c == **n) {
            out.push(Arc::from(n.as_str()));
        }
    }
    Ok(out)
}

/// Executes one command for a connection and returns the reply.
pub fn execute(
    state: &AppState,
    conn: &ConnHandle,
    identity: &Identity,
    cmd: ClientCommand,
) -> ServerReply {
    match cmd {
        ClientCommand::Ping { id } => ServerReply::Pong { id },
        ClientCommand::Subscribe { channels, id } => {
            match subscribe(state, conn, identity, &channels, &id) {
                Ok(chs) => ServerReply::Subscribed {
                    channels: chs.iter().map(|c| c.to_string()).collect(),
                    id,
                },
                Err(reply) => reply,
            }
        }
        ClientCommand::Unsubscribe { channels, id } => match channels_of(&channels, &id) {
            Ok(chs) => {
                let gone = state.hub.unsubscribe(conn, &chs);
                state.bus.channels_inactive(gone);
                ServerReply::Unsubscribed {
                    channels: chs.iter().map(|c| c.to_string()).collect(),
                    id,
                }
            }
            Err(reply) => reply,
        },
    }
}

/// Subscribes to validated, permitted channels, all or nothing.
pub fn subscribe(
    state: &AppState,
    conn: &ConnHandle,
    identity: &Identity,
    names: &[String],
    id: &Option<RequestId>,
) -> Result<Vec<Channel>, ServerReply> {
    let max = state.cfg.max_subscriptions;
    let too_many = |max: usize| {
        error(
            ErrorCode::TooManySubscriptions,
            format!("at most {max} subscriptions per connection"),
            id.clone(),
        )
    };
    if names.len() > max {
        return Err(too_many(max));
    }
    let chs = channels_of(names, id)?;
    if let Some(denied) = chs.iter().find(|c| !identity.may_subscribe(c)) {
        return Err(error(
            ErrorCode::Forbidden,
            format!("this connection may not subscribe to {denied:?}"),
            id.clone(),
        ));
    }
    let active = state
        .hub
        .subscribe(conn, &chs, max)
        .map_err(|e| too_many(e.max))?;
    state.bus.channels_active(active);
    Ok(chs)
}

/// The error code label for metrics.
pub fn code_label(reply: &ServerReply) -> Option<&'static str> {
    match reply {
        ServerReply::Error { code, .. } => Some(match code {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidChannel => "invalid_channel",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
        }),
        ServerReply::Subscribed { .. }
        | ServerReply::Unsubscribed { .. }
        | ServerReply::Pong { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_commands_echo_id() {
        let r = parse(br#"{"op":"fly","id":9}"#, false).unwrap_err();
        match r {
            ServerReply::Error { code, id, .. } => {
                assert_eq!(code, ErrorCode::BadRequest);
                assert_eq!(id, Some(RequestId::Int(9)));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse(b"not json", false).is_err());
        assert!(parse(b"\xff\x00", true).is_err());
        let deep = "[".repeat(10_000);
        assert!(parse(deep.as_bytes(), false).is_err());
    }

    #[test]
    fn commands_are_objects_only() {
        let message = |payload: &[u8], binary| match parse(payload, binary) {
            Err(ServerReply::Error {
                code: ErrorCode::BadRequest,
                message,
                ..
            }) => message,
            other => panic!("unexpected {other:?}"),
        };
        // The first one serde's derive alone read as a subscribe to `news`.
        for bad in [
            &br#"["subscribe",["news"]]"#[..],
            br#"[{"op":"ping"}]"#,
            b"null",
            b"1",
        ] {
            let m = message(bad, false);
            assert!(m.contains(COMMAND_FORM), "{m}");
        }
        // Nor is an array's first element taken for the failed command's id.
        match parse(br#"["x"]"#, false) {
            Err(ServerReply::Error { id, .. }) => assert_eq!(id, None),
            other => panic!("unexpected {other:?}"),
        }
        // MessagePack: a map is a command, an array (rmp-serde's default for a struct) not.
        let subscribe = ClientCommand::Subscribe {
            channels: vec!["news".into()],
            id: Some(RequestId::Int(3)),
        };
        let map = rmp_serde::to_vec_named(&subscribe).unwrap();
        assert_eq!(parse(&map, true).unwrap(), subscribe);
        let array = rmp_serde::to_vec(&subscribe).unwrap();
        assert!(message(&array, true).contains(COMMAND_FORM));
        // JSON: one object, whitespace around it allowed, nothing after it.
        assert_eq!(
            parse(br#" {"op":"ping","id":7} "#, false).unwrap(),
            ClientCommand::Ping {
                id: Some(RequestId::Int(7))
            }
        );
        assert!(parse(br#"{"op":"ping"} {"op":"ping"}"#, false).is_err());
    }
}
