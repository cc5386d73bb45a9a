//! Batch encoding: a flushed batch becomes one frame per encoding in use, built once.
//!
//! JSON frames are assembled from the published JSON bytes verbatim (no parse, no
//! re-serialization); MessagePack frames transcode each message once per batch, straight
//! from its JSON bytes.

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::{self, OP_BINARY, OP_TEXT};
use crate::hub::Encoding;
use crate::wire::ServerReply;

const JSON_PREFIX: &[u8] = b"{\"op\":\"batch\",\"channel\":\"";
const JSON_MIDDLE: &[u8] = b"\",\"messages\":[";
const JSON_SUFFIX: &[u8] = b"]}";

/// `{"op":"batch","channel":"<channel>","messages":[m1,m2,…]}` with each message's bytes
/// copied verbatim. `channel` is a validated name (or `*`), so it needs no escaping.
#[cfg(test)]
fn batch_json(channel: &str, messages: &[Bytes]) -> Bytes {
    let mut out = BytesMut::with_capacity(json_len(channel, messages));
    put_json(&mut out, channel, messages);
    out.freeze()
}

fn json_len(channel: &str, messages: &[Bytes]) -> usize {
    let body: usize =
        messages.iter().map(|m| m.len()).sum::<usize>() + messages.len().saturating_sub(1);
    JSON_PREFIX.len() + channel.len() + JSON_MIDDLE.len() + body + JSON_SUFFIX.len()
}

fn put_json(out: &mut BytesMut, channel: &str, messages: &[Bytes]) {
    out.put_slice(JSON_PREFIX);
    out.put_slice(channel.as_bytes());
    out.put_slice(JSON_MIDDLE);
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(m);
    }
    out.put_slice(JSON_SUFFIX);
}

/// The same batch as a MessagePack map: `{"op":"batch","channel":…,"messages":[…]}`, each
/// message transcoded from its JSON in one pass, with no tree in between (a message's
/// object keys keep their order). A message that is not valid JSON (impossible after
/// validation at the edge) is sent as `nil` rather than dropped, so indexes match.
pub fn batch_msgpack(channel: &str, messages: &[Bytes]) -> Bytes {
    // MessagePack is about as long as the JSON it comes from.
    let mut out = Vec::with_capacity(json_len(channel, messages));
    // Writes into a `Vec` cannot fail; the lengths fit in `u32` (a batch holds at most
    // `--max-batch-messages`, ≤ 100,000).
    let _ = rmp::encode::write_map_len(&mut out, 3);
    let _ = rmp::encode::write_str(&mut out, "op");
    let _ = rmp::encode::write_str(&mut out, "batch");
    let _ = rmp::encode::write_str(&mut out, "channel");
    let _ = rmp::encode::write_str(&mut out, channel);
    let _ = rmp::encode::write_str(&mut out, "messages");
    let _ = rmp::encode::write_array_len(&mut out, messages.len() as u32);
    for m in messages {
        let start = out.len();
        if transcode_json(m, &mut out).is_err() {
            out.truncate(start);
            let _ = rmp::encode::write_nil(&mut out);
        }
    }
    Bytes::from(out)
}

/// Appends the MessagePack form of one JSON value (maps with string keys, like
/// `rmp_serde::to_vec_named`); on error `out` holds a partial value the caller removes.
fn transcode_json(json: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let mut ser = rmp_serde::Serializer::new(&mut *out).with_struct_map();
    serde_transcode::transcode(&mut de, &mut ser).map_err(|_| ())?;
    de.end().map_err(|_| ())
}

/// The complete WebSocket frame (header and payload, built in one buffer) of a batch in
/// `enc`: what every connection using that encoding is sent, byte for byte.
pub fn batch_frame(enc: Encoding, channel: &str, messages: &[Bytes]) -> Bytes {
    match enc {
        Encoding::Json => {
            let len = json_len(channel, messages);
            let mut out = BytesMut::with_capacity(frame::header_len(len) + len);
            frame::put_header(&mut out, OP_TEXT, len);
            put_json(&mut out, channel, messages);
            out.freeze()
        }
        Encoding::Msgpack => frame::frame(OP_BINARY, &batch_msgpack(channel, messages)),
    }
}

/// A reply as a complete frame in the connection's encoding.
pub fn reply_frame(enc: Encoding, reply: &ServerReply) -> Bytes {
    match enc {
        Encoding::Json => frame::frame(OP_TEXT, &serde_json::to_vec(reply).unwrap_or_default()),
        Encoding::Msgpack => frame::frame(
            OP_BINARY,
            &rmp_serde::to_vec_named(reply).unwrap_or_default(),
        ),
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
    fn json_frame_is_header_plus_batch() {
        let msgs = [Bytes::from_static(b"1"), Bytes::from_static(br#"{"a":2}"#)];
        let f = batch_frame(Encoding::Json, "c", &msgs);
        let body = batch_json("c", &msgs);
        assert_eq!(f[0], 0x81);
        assert_eq!(usize::from(f[1]), body.len());
        assert_eq!(&f[2..], &body[..]);
    }

    #[test]
    fn msgpack_keeps_key_order_and_sends_invalid_json_as_nil() {
        let msgs = [
            Bytes::from_static(br#"{"z":-1,"a":[2.5,"\u00e9\n"]}"#),
            Bytes::from_static(b"{not json"),
            Bytes::from_static(b"1 2"),
            Bytes::from_static(b"18446744073709551615"),
        ];
        let out = batch_msgpack("c", &msgs);
        let v: serde_json::Value = rmp_serde::from_slice(&out).unwrap();
        assert_eq!(
            v["messages"],
            serde_json::json!([{"z":-1,"a":[2.5,"\u{e9}\n"]}, null, null, u64::MAX])
        );
        let z = out.windows(2).position(|w| w == b"\xa1z").unwrap();
        let a = out.windows(2).position(|w| w == b"\xa1a").unwrap();
        assert!(z < a, "keys keep the order they were published in");
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
