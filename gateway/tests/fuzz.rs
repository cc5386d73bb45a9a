//! Property-based fuzzing of every decoder that takes untrusted bytes: client WebSocket
//! frames, client commands (JSON and MessagePack), the Redis envelope, publish bodies, and
//! the depth scan; and of the MessagePack batch encoder, which transcodes published JSON.
//! `make test` runs a short bounded pass; `make fuzz` runs many more cases
//! (`PROPTEST_CASES`).

use gateway::api::publish::expand;
use gateway::encode::batch_msgpack;
use gateway::wire::{json_depth, ClientCommand, Envelope, PublishBody};
use gateway::ws::commands::parse;
use gateway::ws::io::{Outbox, RawWrite, Socket};
use gateway::ws::reader::FrameReader;
use proptest::prelude::*;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Takes and forgets whatever the frame reader writes (its pongs).
struct Discard;

impl RawWrite for Discard {
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn poll_write_ready(&self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Everything the frame reader makes of `bytes`: (messages, whether it ended in an error).
fn read_frames(bytes: &[u8]) -> (usize, bool) {
    use futures_util::StreamExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    rt.block_on(async {
        let out = Arc::new(Outbox::new(Socket::other(Discard), 4));
        let mut reader = FrameReader::new(bytes, 2048, out);
        let (mut n, mut failed) = (0, false);
        while let Some(item) = reader.next().await {
            assert!(!failed, "nothing after an error");
            match item {
                Ok(_) => n += 1,
                Err(_) => failed = true,
            }
        }
        (n, failed)
    })
}

/// A masked client frame.
fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 } else { 0 } | (opcode & 0x0f)];
    if payload.len() < 126 {
        f.push(0x80 | payload.len() as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

/// JSON-looking text: mostly structure characters, quotes, escapes and digits, so the
/// parsers get deep into their states instead of failing on the first byte.
fn jsonish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("{".to_owned()),
            Just("}".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just(",".to_owned()),
            Just(":".to_owned()),
            Just("\"".to_owned()),
            Just("\\\\".to_owned()),
            Just("\"op\"".to_owned()),
            Just("\"subscribe\"".to_owned()),
            Just("\"channels\"".to_owned()),
            Just("\"id\"".to_owned()),
            Just("\"channel\"".to_owned()),
            Just("\"data\"".to_owned()),
            Just("\"messages\"".to_owned()),
            Just("true".to_owned()),
            Just("null".to_owned()),
            "[0-9]{1,20}",
            "[a-z:*@. -]{0,8}",
            any::<char>().prop_map(|c| c.to_string()),
        ],
        0..64,
    )
    .prop_map(|v| v.concat())
}

/// Any JSON value, nested a few levels deep.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            proptest::collection::btree_map(".{0,6}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn frame_reader_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let (n, _) = read_frames(&bytes);
        // Every message takes at least a 6-byte masked header.
        prop_assert!(n <= bytes.len() / 6);
    }

    #[test]
    fn frame_reader_survives_mutated_frames(
        frames in proptest::collection::vec(
            (any::<bool>(), prop_oneof![Just(0u8), Just(1), Just(2), Just(8), Just(9), Just(10)],
             proptest::collection::vec(any::<u8>(), 0..300), any::<[u8; 4]>()),
            1..6),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let mut bytes: Vec<u8> = frames
            .iter()
            .flat_map(|(fin, op, p, m)| client_frame(*fin, *op, p, *m))
            .collect();
        for (at, b) in flips {
            let i = at % bytes.len();
            bytes[i] ^= b;
        }
        let (n, _) = read_frames(&bytes);
        prop_assert!(n <= bytes.len() / 6);
    }

    #[test]
    fn command_parser_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&bytes, false);
        let _ = parse(&bytes, true);
    }

    #[test]
    fn command_parser_never_panics_on_jsonish(text in jsonish()) {
        let _ = parse(text.as_bytes(), false);
    }

    #[test]
    fn valid_commands_round_trip_in_both_encodings(
        chans in proptest::collection::vec("[a-z0-9:._@-]{1,20}", 1..8),
        id in any::<i64>(),
    ) {
        let cmd = ClientCommand::Subscribe { channels: chans, id: Some(gateway::wire::RequestId::Int(id)) };
        let json = serde_json::to_vec(&cmd).unwrap();
        prop_assert_eq!(parse(&json, false).ok(), Some(cmd.clone()));
        let mp = rmp_serde::to_vec_named(&cmd).unwrap();
        prop_assert_eq!(parse(&mp, true).ok(), Some(cmd));
    }

    #[test]
    fn envelope_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Envelope::decode(&bytes);
    }

    #[test]
    fn envelope_decoder_survives_mutations(
        text in "[ -~]{0,64}",
        t in any::<u64>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
    ) {
        let json = serde_json::to_vec(&text).unwrap();
        let mut bytes = Envelope::new(&json, t).encode();
        prop_assert_eq!(Envelope::decode(&bytes).unwrap().d, json);
        for (at, b) in flips {
            let i = at % bytes.len();
            bytes[i] ^= b;
        }
        if let Ok(env) = Envelope::decode(&bytes) {
            prop_assert!(serde_json::from_slice::<serde_json::Value>(&env.d).is_ok());
        }
    }

    #[test]
    fn publish_bodies_never_panic(text in jsonish()) {
        if let Ok(body) = serde_json::from_str::<PublishBody<'_>>(&text) {
            let mut out = Vec::new();
            let _ = expand(body, &mut out, false);
        }
    }

    #[test]
    fn msgpack_batches_carry_every_json_value(value in json_value(), text in jsonish()) {
        let valid = serde_json::to_vec(&value).unwrap();
        // What serde_json reads back (its float parsing is not exact to the last digit).
        let read: serde_json::Value = serde_json::from_slice(&valid).unwrap();
        let out = batch_msgpack("c", &[valid.into(), text.clone().into()]);
        let batch: serde_json::Value = rmp_serde::from_slice(&out).unwrap();
        prop_assert_eq!(&batch["messages"][0], &read);
        // Text that is not one JSON value arrives as nil, in its place.
        let parsed = serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default();
        prop_assert_eq!(&batch["messages"][1], &parsed);
    }

    #[test]
    fn depth_scan_matches_a_real_parse(depth in 0usize..100, wide in 0usize..4) {
        let mut s = String::new();
        for i in 0..depth {
            s.push(if i % 2 == 0 { '[' } else { '{' });
            if i % 2 == 1 { s.push_str("\"k\":"); }
        }
        s.push_str(&"1,".repeat(wide));
        s.push('1');
        for i in (0..depth).rev() {
            s.push(if i % 2 == 0 { ']' } else { '}' });
        }
        // Objects here hold one key only, so only arrays carry the "wide" items.
        let valid = serde_json::from_str::<serde_json::Value>(&s).is_ok() || depth > 100;
        if valid {
            prop_assert_eq!(json_depth(s.as_bytes()), depth);
        }
    }
}
