//! Batch encoding: a flushed batch becomes one frame per encoding in use, built once.
//!
//! JSON frames are assembled from the published JSON bytes verbatim (no parse, no
//! re-serialization); MessagePack frames transcode each message once per batch.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::hub::Encoding;
use crate::wire::ServerReply;

/// `{"op":"batch","channel":"<channel>","messages":[m1,m2,…]}` with each message's bytes
/// copied verbatim. `channel` is a validated name (or `*`), so it needs no escaping.
pub fn batch_json(channel: &str, messages: &[Bytes]) -> Bytes {
    let body: usize = messages.iter().map(|m| m.len() + 1).sum();
    let mut out = BytesMut::with_capacity(48 + channel.len() + body);
    out.put_slice(b"{\"op\":\"batch\",\"channel\":\"");
    out.put_slice(channel.as_bytes());
    out.put_slice(b"\",\"messages\":[");
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(m);
    }
    out.put_slice(b"]}");
    out.freeze()
}

#[derive(Serialize)]
struct BatchMsgpack<'a> {
    op: &'static str,
    channel: &'a str,
    messages: Vec<serde_json::Value>,
}

/// The same batch as a MessagePack map. Messages that are not valid JSON (impossible
/// after validation at the edge) are sent as `nil` rather than dropped, so indexes match.
pub fn batch_msgpack(channel: &str, messages: &[Bytes]) -> Bytes {
    let batch = BatchMsgpack {
        op: "batch",
        channel,
        messages: messages
            .iter()
            .map(|m| serde_json::from_slice(m).unwrap_or(serde_json::Value::Null))
            .collect(),
    };
    Bytes::from(rmp_serde::to_vec_named(&batch).unwrap_or_default())
}

/// Builds the batch frame for `enc`.
pub fn batch_frame(enc: Encoding, channel: &str, messages: &[Bytes]) -> Message {
    match enc {
        Encoding::Json => {
            let bytes = batch_json(channel, messages);
            // Concatenated valid JSON is valid UTF-8; a failure here would mean a bug
            // upstream, and an empty text frame is the harmless answer.
            Message::Text(Utf8Bytes::try_from(bytes).unwrap_or_default())
        }
        Encoding::Msgpack => Message::Binary(batch_msgpack(channel, messages)),
    }
}

/// Encodes a reply in the connection's encoding.
pub fn reply_frame(enc: Encoding, reply: &ServerReply) -> Message {
    match enc {
        Encoding::Json => Message::text(serde_json::to_string(reply).unwrap_or_default()),
        Encoding::Msgpack => Message::binary(rmp_serde::to_vec_named(reply).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_batch_is_verbatim_and_valid() {
        let msgs = [
            Bytes::from_static(br#"{"a": 1}"#),
            Bytes::from_static(b"2"),
            Bytes::from_static(br#""s""#),
        ];
        let out = batch_json("news", &msgs);
        assert_eq!(
            &out[..],
            br#"{"op":"batch","channel":"news","messages":[{"a": 1},2,"s"]}"#
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["messages"][0]["a"], 1);
    }

    #[test]
    fn msgpack_batch_round_trips() {
        let msgs = [Bytes::from_static(br#"{"a":[1,true,null]}"#)];
        let out = batch_msgpack("*", &msgs);
        let v: serde_json::Value = rmp_serde::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"op":"batch","channel":"*","messages":[{"a":[1,true,null]}]})
        );
    }
}
