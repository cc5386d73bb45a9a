//! Wire types shared by the gateway and `pushctl`: channel names, the client protocol
//! (DESIGN §4.1), the publish API body (§4.2) and the Redis envelope (§4.3).
//!
//! Everything that crosses a process boundary is defined here, once.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The reserved channel name under which broadcasts are delivered.
pub const BROADCAST: &str = "*";
/// Longest allowed channel name, in bytes (all allowed characters are ASCII).
pub const MAX_CHANNEL_LEN: usize = 128;
/// Subprotocol for JSON text frames (the default).
pub const SUBPROTOCOL_JSON: &str = "pushfleet.v1.json";
/// Subprotocol for MessagePack binary frames.
pub const SUBPROTOCOL_MSGPACK: &str = "pushfleet.v1.msgpack";
/// Version of the Redis envelope written by this build.
pub const ENVELOPE_VERSION: u8 = 1;

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("channel name is empty")]
    Empty,
    #[error("channel name is longer than {MAX_CHANNEL_LEN} characters")]
    TooLong,
    #[error("channel name {0:?} has a character outside A-Z a-z 0-9 _ - . : @")]
    BadChar(String),
    #[error(
        "\"*\" is reserved for broadcasts: they reach every connection without subscribing \
         and are published with `\"broadcast\":true` (pushctl: --broadcast)"
    )]
    Broadcast,
}

/// Checks a channel name against DESIGN §4.1: 1–128 chars of `A-Z a-z 0-9 _ - . : @`.
/// `*` (broadcast) is not a valid name for subscribing or publishing to one channel.
pub fn validate_channel(name: &str) -> Result<(), ChannelError> {
    if name.is_empty() {
        return Err(ChannelError::Empty);
    }
    if name == BROADCAST {
        return Err(ChannelError::Broadcast);
    }
    if name.len() > MAX_CHANNEL_LEN {
        return Err(ChannelError::TooLong);
    }
    let ok = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':' | b'@');
    if name.bytes().all(ok) {
        Ok(())
    } else {
        let shown: String = name.chars().take(MAX_CHANNEL_LEN).collect();
        Err(ChannelError::BadChar(shown))
    }
}

/// Deepest nesting of arrays and objects accepted in published data. Deeper values are
/// refused at the edge, so no later step (MessagePack transcoding, a browser's parser)
/// meets them.
pub const MAX_DATA_DEPTH: usize = 64;

/// Nesting depth of a JSON text that is already known to be valid, by one linear scan.
pub fn json_depth(json: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for &b in json {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// A client-chosen request id, echoed in the reply. Numbers and strings only.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RequestId {
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
}

/// Read by hand rather than by serde's untagged derive, whose refusal of anything else
/// named the type ("did not match any variant of untagged enum RequestId"); this one says
/// what `id` may be. The variants are the derive's: an integer that fits `i64` is `Int`.
impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Id;
        impl serde::de::Visitor<'_> for Id {
            type Value = RequestId;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number or a string as `id`")
            }
            fn visit_i64<E>(self, v: i64) -> Result<RequestId, E> {
                Ok(RequestId::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<RequestId, E> {
                Ok(i64::try_from(v).map_or(RequestId::Uint(v), RequestId::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<RequestId, E> {
                Ok(RequestId::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<RequestId, E> {
                Ok(RequestId::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<RequestId, E> {
                Ok(RequestId::Str(v))
            }
        }
        d.deserialize_any(Id)
    }
}

/// A command sent by a client (DESIGN §4.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum ClientCommand {
    Subscribe {
        channels: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
    Unsubscribe {
        channels: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
}

/// Only the `id` of a command, used to echo it in the error for a command that did not parse.
#[derive(Debug, Deserialize)]
pub struct IdOnly {
    #[serde(default)]
    pub id: Option<RequestId>,
}

/// Error codes sent in `{"op":"error"}` frames; stable, snake_case on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    InvalidChannel,
    TooManySubscriptions,
    Unauthorized,
    Forbidden,
    RateLimited,
}

/// A reply or notice from the server (every server frame except `batch`, which is
/// assembled by hand from raw JSON in [`crate::encode`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum ServerReply {
    Subscribed {
        channels: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
    Unsubscribed {
        channels: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
}

/// One entry of a `POST /api/publish` body. Exactly one of `channel`, `channels`,
/// `broadcast: true` or `messages` must be given; `data` goes with the first three.
/// Read only from a JSON object (`Deserialize` below), at every level.
#[derive(Debug, Serialize, Default)]
pub struct PublishBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub broadcast: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<PublishBody<'a>>>,
}

/// [`PublishBody`]'s fields as serde's derive reads them. The derive alone would also
/// take a positional array (`["news",null,false,1]` as a channel and its data), which is
/// not one of the API's forms; `PublishBody`'s `Deserialize` hands this one a map only
/// ([`from_map`]).
#[derive(Deserialize)]
struct PublishFields<'a> {
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    broadcast: bool,
    #[serde(borrow, default, deserialize_with = "present_raw")]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Option<Vec<PublishBody<'a>>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for PublishBody<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let f: PublishFields<'a> =
            from_map(de, r#"an object such as {"channel":"news","data":…}"#)?;
        Ok(PublishBody {
            channel: f.channel,
            channels: f.channels,
            broadcast: f.broadcast,
            data: f.data,
            messages: f.messages,
        })
    }
}

/// What a malformed client command's error names as expected ([`from_map`]).
pub const COMMAND_FORM: &str = r#"an object such as {"op":"subscribe","channels":["news"]}"#;

/// Reads a `T` from a JSON object or a MessagePack map only, where serde's derive would
/// also take an array, by position (a struct's fields, or an internally tagged enum's tag
/// and fields): the wire's forms are all objects. `expecting` names the form in the error
/// for anything else.
pub fn from_map<'de, D, T>(de: D, expecting: &'static str) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct MapOnly<T> {
        expecting: &'static str,
        value: std::marker::PhantomData<T>,
    }
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for MapOnly<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    de.deserialize_map(MapOnly {
        expecting,
        value: std::marker::PhantomData,
    })
}

/// `data: null` is a value to publish, not an absent field.
fn present_raw<'de, D>(de: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <&RawValue>::deserialize(de).map(Some)
}

/// Answer of a successful publish: the number of (message, channel) pairs accepted.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublishAccepted {
    pub published: usize,
}

/// JSON error body of every HTTP error: `{"error":{"code":"…","message":"…"}}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct HttpErrorBody {
    pub error: HttpErrorDetail,
}

/// The inside of [`HttpErrorBody`].
#[derive(Debug, Serialize, Deserialize)]
pub struct HttpErrorDetail {
    pub code: String,
    pub message: String,
}

/// The Redis pub/sub payload (DESIGN §4.3): a MessagePack map
/// `{"v":1,"d":<bin: JSON bytes>,"t":<unix ms>}`. Unknown keys are ignored, so later
/// versions may add fields (sequence numbers, for recovery) without breaking old gateways.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u8,
    #[serde(with = "serde_bytes")]
    pub d: Vec<u8>,
    pub t: u64,
}

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a MessagePack envelope: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("unsupported envelope version {0}")]
    Version(u8),
    #[error("envelope data is not valid JSON")]
    NotJson,
    #[error("envelope data nests deeper than {MAX_DATA_DEPTH} levels")]
    TooDeep,
}

impl Envelope {
    /// Wraps already-validated JSON bytes.
    pub fn new(json: &[u8], published_ms: u64) -> Self {
        Envelope {
            v: ENVELOPE_VERSION,
            d: json.to_vec(),
            t: published_ms,
        }
    }

    /// Encodes as a MessagePack map with named fields.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing a plain struct of integers and bytes into a Vec cannot fail.
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    /// Decodes and checks version and that `d` holds JSON. Never panics on any input.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let env: Envelope = rmp_serde::from_slice(bytes)?;
        if env.v != ENVELOPE_VERSION {
            return Err(EnvelopeError::Version(env.v));
        }
        if serde_json::from_slice::<&RawValue>(&env.d).is_err() {
            return Err(EnvelopeError::NotJson);
        }
        if json_depth(&env.d) > MAX_DATA_DEPTH {
            return Err(EnvelopeError::TooDeep);
        }
        Ok(env)
    }
}

/// Milliseconds since the Unix epoch, for envelope timestamps.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names() {
        assert!(validate_channel("news").is_ok());
        assert!(validate_channel("room:42@eu-1.a_b").is_ok());
        assert!(validate_channel(&"a".repeat(128)).is_ok());
        assert_eq!(validate_channel(""), Err(ChannelError::Empty));
        assert_eq!(
            validate_channel(&"a".repeat(129)),
            Err(ChannelError::TooLong)
        );
        // It said "has a character outside …" of the one name that has a meaning.
        assert_eq!(validate_channel("*"), Err(ChannelError::Broadcast));
        assert!(ChannelError::Broadcast
            .to_string()
            .contains("reserved for broadcasts"));
        assert!(validate_channel("a b").is_err());
        assert!(validate_channel("é").is_err());
        assert!(validate_channel("news/1").is_err());
    }

    #[test]
    fn depth_scan() {
        assert_eq!(json_depth(b"1"), 0);
        assert_eq!(json_depth(br#"{"a":[1,{"b":2}]}"#), 3);
        assert_eq!(json_depth(br#"["[[[\"{{"]"#), 1);
        assert_eq!(json_depth(br#"["\\",[]]"#), 2);
    }

    #[test]
    fn commands_parse() {
        let c: ClientCommand =
            serde_json::from_str(r#"{"op":"subscribe","channels":["a","b"],"id":1}"#).unwrap();
        assert_eq!(
            c,
            ClientCommand::Subscribe {
                channels: vec!["a".into(), "b".into()],
                id: Some(RequestId::Int(1))
            }
        );
        let c: ClientCommand = serde_json::from_str(r#"{"op":"ping","id":"x"}"#).unwrap();
        assert_eq!(
            c,
            ClientCommand::Ping {
                id: Some(RequestId::Str("x".into()))
            }
        );
        assert!(serde_json::from_str::<ClientCommand>(r#"{"op":"nope"}"#).is_err());
        assert!(serde_json::from_str::<ClientCommand>(r#"{"op":"subscribe"}"#).is_err());
        assert!(
            serde_json::from_str::<ClientCommand>(r#"{"op":"subscribe","channels":"a"}"#).is_err()
        );
        // Unknown fields are ignored (forward compatibility).
        assert!(serde_json::from_str::<ClientCommand>(r#"{"op":"ping","x":[1]}"#).is_ok());
    }

    #[test]
    fn ids_are_numbers_or_strings_and_say_so() {
        let id = |json: &str| serde_json::from_str::<RequestId>(json);
        assert_eq!(id("-3").unwrap(), RequestId::Int(-3));
        assert_eq!(id("7").unwrap(), RequestId::Int(7));
        assert_eq!(
            id("18446744073709551615").unwrap(),
            RequestId::Uint(u64::MAX)
        );
        assert_eq!(id("1.5").unwrap(), RequestId::Float(1.5));
        assert_eq!(id(r#""x""#).unwrap(), RequestId::Str("x".into()));
        let packed = rmp_serde::to_vec(&200u8).unwrap();
        assert_eq!(
            rmp_serde::from_slice::<RequestId>(&packed).unwrap(),
            RequestId::Int(200)
        );
        // Anything else is refused naming what `id` may be (it named `untagged enum
        // RequestId`).
        for bad in [r#"{"a":1}"#, "[1]", "true", "null"] {
            let e = id(bad).unwrap_err().to_string();
            assert!(
                e.contains("a number or a string as `id`") && !e.contains("untagged"),
                "{bad}: {e}"
            );
        }
        for json in ["-3", "7", "18446744073709551615", "1.5", r#""x""#] {
            assert_eq!(serde_json::to_string(&id(json).unwrap()).unwrap(), json);
        }
    }

    #[test]
    fn commands_parse_from_msgpack() {
        let cmd = ClientCommand::Unsubscribe {
            channels: vec!["news".into()],
            id: Some(RequestId::Int(7)),
        };
        let bytes = rmp_serde::to_vec_named(&cmd).unwrap();
        let back: ClientCommand = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, cmd);
    }

    #[test]
    fn replies_serialize() {
        let r = ServerReply::Error {
            code: ErrorCode::TooManySubscriptions,
            message: "m".into(),
            id: None,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"op":"error","code":"too_many_subscriptions","message":"m"}"#
        );
        let r = ServerReply::Pong {
            id: Some(RequestId::Int(3)),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"op":"pong","id":3}"#
        );
    }

    /// The worked example in docs/PROTOCOL.md, byte for byte.
    #[test]
    fn envelope_matches_documented_bytes() {
        let bytes = Envelope::new(br#"{"hello":"world"}"#, 1_700_000_000_000).encode();
        let mut expect = vec![0x83, 0xa1, b'v', 0x01, 0xa1, b'd', 0xc4, 17];
        expect.extend_from_slice(br#"{"hello":"world"}"#);
        expect.extend_from_slice(&[0xa1, b't', 0xcf, 0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0]);
        assert_eq!(bytes, expect);
    }

    #[test]
    fn envelope_round_trip_and_garbage() {
        let env = Envelope::new(br#"{"a":1}"#, 1_700_000_000_000);
        let bytes = env.encode();
        assert_eq!(Envelope::decode(&bytes).unwrap(), env);
        // "d" is MessagePack bin (0xc4), not an array of integers.
        assert!(bytes.windows(2).any(|w| w == [0xc4, 7]));
        assert!(Envelope::decode(b"garbage").is_err());
        assert!(Envelope::decode(&[]).is_err());
        let bad = Envelope {
            v: 9,
            ..env.clone()
        };
        assert!(matches!(
            Envelope::decode(&bad.encode()),
            Err(EnvelopeError::Version(9))
        ));
        let not_json = Envelope::new(b"{nope", 1);
        assert!(matches!(
            Envelope::decode(&not_json.encode()),
            Err(EnvelopeError::NotJson)
        ));
    }
}
