//! The gateway core on the embedded bus, end to end: real gateway processes, real
//! WebSocket clients, real HTTP.

use std::time::Duration;

use serde_json::{json, Value};
use tests::{eventually, http, within, Client, Gateway};

const SUBS: &str = "pushfleet_subscriptions";

fn messages(batch: &Value) -> Vec<Value> {
    assert_eq!(batch["op"], "batch", "not a batch: {batch}");
    batch["messages"].as_array().unwrap().clone()
}

#[tokio::test]
async fn hundred_clients_get_fifty_messages_as_one_batch_in_order_once() {
    let gw = Gateway::builder()
        .arg("--merge-window-ms", 2000)
        .start()
        .await;
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(Client::connect(&gw.ws_url("channels=news"), None).await);
    }
    gw.wait_metric(SUBS, "", 100.0).await;
    for i in 0..50 {
        gw.publish_ok(json!({"channel": "news", "data": {"n": i}}))
            .await;
    }
    let expected: Vec<Value> = (0..50).map(|i| json!({"n": i})).collect();
    for c in &mut clients {
        let batch = c.json().await;
        assert_eq!(batch["channel"], "news");
        assert_eq!(messages(&batch), expected);
        // Nothing else was queued before the pong: the batch came exactly once.
        assert!(c.roundtrip(1).await.is_empty());
    }
    assert_eq!(
        gw.metric("pushfleet_batches_flushed_total", "trigger=\"window\"")
            .await,
        1.0
    );
    assert_eq!(
        gw.metric("pushfleet_serializations_total", "encoding=\"json\"")
            .await,
        1.0,
        "one serialization for 100 connections"
    );
    assert_eq!(gw.metric("pushfleet_frames_sent_total", "").await, 200.0);
}

#[tokio::test]
async fn window_zero_sends_each_message_alone() {
    let gw = Gateway::builder().arg("--merge-window-ms", 0).start().await;
    let mut c = Client::connect(&gw.ws_url("channels=a"), None).await;
    gw.wait_metric(SUBS, "", 1.0).await;
    for i in 0..5 {
        gw.publish_ok(json!({"channel": "a", "data": i})).await;
    }
    for i in 0..5 {
        assert_eq!(messages(&c.json().await), vec![json!(i)]);
    }
}

/// Every browser, and Node's `ws` client, offers permessage-deflate. The gateway does not
/// compress (a batch is encoded once and its bytes written to every socket as they are),
/// so it declines by not answering the offer, and the session is plain frames.
#[tokio::test]
async fn a_compression_offer_is_declined_and_frames_stay_plain() {
    let gw = Gateway::builder().arg("--merge-window-ms", 0).start().await;
    let offer = "permessage-deflate; client_max_window_bits";
    let mut ws = tests::raw::RawWs::connect(
        gw.public,
        "/ws?channels=z",
        &[("Sec-WebSocket-Extensions", offer)],
    )
    .await;
    assert_eq!(ws.status, 101, "{}", ws.head);
    assert!(
        !ws.head
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions"),
        "no extension accepted: {}",
        ws.head
    );
    gw.wait_metric(SUBS, "", 1.0).await;
    gw.publish_ok(json!({"channel": "z", "data": "plain"}))
        .await;
    // An uncompressed text frame: its payload is the JSON batch itself.
    assert_eq!(messages(&ws.json().await), vec![json!("plain")]);
}

/// RFC 6455 §5.5.1: nothing follows a close frame. A connection closed as a slow consumer
/// waits up to 5 s for its close frame to go out behind what its socket has not taken yet
/// and for the client's answer; the batches published meanwhile are not sent after it
/// (refused by its full outbox until its session takes it out of the fan-out, then no
/// longer offered).
#[tokio::test]
async fn nothing_is_sent_after_the_close_frame() {
    // One shard: a batch is offered to its subscribers in the order they connected, so
    // once the second has it, the first (closing) one has been offered it or has left.
    let gw = Gateway::builder()
        .arg("--merge-window-ms", 0)
        .arg("--queue-frames", 4)
        .arg("--shards", 1)
        .start()
        .await;
    let mut slow = tests::raw::RawWs::connect(gw.public, "/ws?channels=c", &[]).await;
    assert_eq!(slow.status, 101, "{}", slow.head);
    let mut fast = Client::connect(&gw.ws_url("channels=c"), None).await;
    gw.wait_metric(SUBS, "", 2.0).await;
    // The slow client reads nothing until the gateway closes it.
    publish_until_a_slow_consumer_closes(&gw, &mut fast, "c").await;
    // A batch published now reaches the fast client; the slow one, closing, must not get it.
    gw.publish_ok(json!({"channel": "c", "data": "late"})).await;
    assert_eq!(messages(&fast.json().await), vec![json!("late")]);
    // The slow client reads what reached it, then the close frame, and nothing after it
    // once it has answered the close.
    assert_eq!(slow.close_code().await, Some(1013));
    slow.send(&tests::raw::frame(true, 0, 8, &1000u16.to_be_bytes(), true))
        .await;
    assert_eq!(
        slow.read_frame().await,
        None,
        "a frame after the close frame"
    );
}

/// Many publishes back to back on one kept-open HTTP connection (each request's task
/// re-polls itself, see `gateway::repoll`): every one is answered and delivered, in order.
#[tokio::test]
async fn back_to_back_publishes_on_one_http_connection_all_arrive_in_order() {
    let gw = Gateway::builder().arg("--merge-window-ms", 0).start().await;
    let mut c = Client::connect(&gw.ws_url("channels=a"), None).await;
    gw.wait_metric(SUBS, "", 1.0).await;
    let mut api = http::KeepAlive::new(gw.internal);
    for i in 0..300 {
        let body = json!({"channel": "a", "data": i}).to_string();
        let status = within("publish", api.post_json("/api/publish", &body)).await;
        assert_eq!(status, 202, "publish {i}");
    }
    for i in 0..300 {
        assert_eq!(messages(&c.json().await), vec![json!(i)]);
    }
}

/// One shard holding more subscribers than it writes per chunk: the delivery resumes
/// where it yielded, so every connection gets every batch once and in order.
#[tokio::test]
async fn a_fanout_larger_than_a_chunk_reaches_everyone_once_in_order() {
    let gw = Gateway::builder()
        .arg("--merge-window-ms", 0)
        .arg("--shards", 1)
        .arg("--connect-burst-per-ip", 1000)
        .start()
        .await;
    let n = 2 * gateway::hub::DELIVER_CHUNK + 50;
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(Client::connect(&gw.ws_url("channels=big"), None).await);
    }
    gw.wait_metric(SUBS, "", n as f64).await;
    for i in 0..3 {
        gw.publish_ok(json!({"channel": "big", "data": i})).await;
    }
    for c in &mut clients {
        for i in 0..3 {
            assert_eq!(messages(&c.json().await), vec![json!(i)]);
        }
        assert!(
            c.roundtrip(1).await.is_empty(),
            "nothing more than the 3 batches"
        );
    }
    assert_eq!(
        gw.metric("pushfleet_frames_sent_total", "").await,
        (3 * n + n) as f64,
        "3 batches and one pong per connection"
    );
}

#[tokio::test]
async fn subscribe_unsubscribe_and_channel_isolation() {
    let gw = Gateway::builder().arg("--merge-window-ms", 0).start().await;
    let mut a = Client::connect(&gw.ws_url(""), None).await;
    let mut b = Client::connect(&gw.ws_url(""), None).await;
    a.send_json(json!({"op":"subscribe","channels":["news","ctl"],"id":1}))
        .await;
    assert_eq!(
        a.json().await,
        json!({"op":"subscribed","channels":["news","ctl"],"id":1})
    );
    b.send_json(json!({"op":"subscribe","channels":["sports"],"id":"x"}))
        .await;
    assert_eq!(
        b.json().await,
        json!({"op":"subscribed","channels":["sports"],"id":"x"})
    );
    gw.publish_ok(json!({"channel":"news","data":"n1"})).await;
    gw.publish_ok(json!({"channel":"sports","data":"s1"})).await;
    let got = a.json().await;
    assert_eq!(
        (got["channel"].clone(), messages(&got)),
        (json!("news"), vec![json!("n1")])
    );
    let got = b.json().await;
    assert_eq!(
        (got["channel"].clone(), messages(&got)),
        (json!("sports"), vec![json!("s1")])
    );

    a.send_json(json!({"op":"unsubscribe","channels":["news"],"id":2}))
        .await;
    assert_eq!(
        a.json().await,
        json!({"op":"unsubscribed","channels":["news"],"id":2})
    );
    // Published in this order and flushed in order: had `a` still been on "news",
    // that batch would arrive before the "ctl" one.
    gw.publish_ok(json!({"channel":"news","data":"n2"})).await;
    gw.publish_ok(json!({"channel":"ctl","data":"c1"})).await;
    let got = a.json().await;
    assert_eq!(got["channel"], "ctl");
    // b never saw news or ctl.
    assert!(b.roundtrip(9).await.is_empty());
}

#[tokio::test]
async fn broadcast_reaches_everyone() {
    let gw = Gateway::builder()
        .arg("--merge-window-ms", 100)
        .start()
        .await;
    let mut clients = vec![
        Client::connect(&gw.ws_url("channels=a"), None).await,
        Client::connect(&gw.ws_url("channels=b"), None).await,
        Client::connect(&gw.ws_url(""), None).await,
        Client::connect(&gw.ws_url(""), Some("pushfleet.v1.msgpack")).await,
    ];
    gw.wait_metric("pushfleet_connections", "", 4.0).await;
    let n = gw
        .publish_ok(json!({"messages":[{"broadcast":true,"data":{"all":1}},{"broadcast":true,"data":{"all":2}}]}))
        .await;
    assert_eq!(n, 2);
    for c in &mut clients {
        let got = c.json().await;
        assert_eq!(got["channel"], "*");
        assert_eq!(messages(&got), vec![json!({"all":1}), json!({"all":2})]);
    }
}

#[tokio::test]
async fn msgpack_subprotocol_gets_binary_frames_encoded_once_per_encoding() {
    let gw = Gateway::builder()
        .arg("--merge-window-ms", 200)
        .start()
        .await;
    let mut mp = Client::connect(&gw.ws_url(""), Some("pushfleet.v1.msgpack")).await;
    let mut js = Client::connect(&gw.ws_url("channels=m"), Some("pushfleet.v1.json")).await;
    mp.send_msgpack(json!({"op":"subscribe","channels":["m"],"id":5}))
        .await;
    // The reply is a binary MessagePack map.
    let reply = match mp.ws_next_raw().await {
        tokio_tungstenite::tungstenite::Message::Binary(b) => {
            rmp_serde::from_slice::<Value>(&b).unwrap()
        }
        other => panic!("expected a binary frame, got {other:?}"),
    };
    assert_eq!(reply, json!({"op":"subscribed","channels":["m"],"id":5}));
    gw.wait_metric(SUBS, "", 2.0).await;
    gw.publish_ok(json!({"channel":"m","data":{"x":[1,2.5,"s",null,true]}}))
        .await;
    gw.publish_ok(json!({"channel":"m","data":7})).await;
    let expected = vec![json!({"x":[1,2.5,"s",null,true]}), json!(7)];
    assert_eq!(messages(&mp.json().await), expected);
    assert_eq!(messages(&js.json().await), expected);
    assert_eq!(
        gw.metric("pushfleet_serializations_total", "encoding=\"msgpack\"")
            .await,
        1.0
    );
    assert_eq!(
        gw.metric("pushfleet_serializations_total", "encoding=\"json\"")
            .await,
        1.0
    );
    // An unknown subprotocol is refused with 400.
    let err = Client::try_connect(&gw.ws_url(""), Some("chat"))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("400"), "{err}");
}

/// Publishes 64 KiB messages on `channel`, one at a time, each read by `fast` (in order)
/// before the next, until the gateway has closed one connection as a slow consumer: a
/// subscriber that reads nothing fills its socket's buffers, then its outbox.
async fn publish_until_a_slow_consumer_closes(gw: &Gateway, fast: &mut Client, channel: &str) {
    let closes = || {
        gw.metric(
            "pushfleet_connections_closed_total",
            "reason=\"slow_consumer\"",
        )
    };
    let blob = "x".repeat(64 * 1024);
    let mut sent = 0u64;
    for i in 0..2000u64 {
        gw.publish_ok(json!({"channel": channel, "data": {"i": i, "blob": blob}}))
            .await;
        sent += 1;
        // Pace on the fast client, so only the slow one falls behind.
        let got = fast.json().await;
        assert_eq!(
            messages(&got)[0]["i"],
            i,
            "fast client got every message in order"
        );
        if closes().await == 1.0 {
            break;
        }
    }
    assert_eq!(
        closes().await,
        1.0,
        "slow consumer detected within {sent} messages"
    );
}

#[tokio::test]
async fn slow_consumer_is_closed_with_1013_while_a_fast_one_gets_everything() {
    let gw = Gateway::builder()
        .arg("--merge-window-ms", 0)
        .arg("--queue-frames", 8)
        .capture_log()
        .start()
        .await;
    let mut slow = Client::connect(&gw.ws_url("channels=firehose"), None).await;
    let mut fast = Client::connect(&gw.ws_url("channels=firehose"), None).await;
    gw.wait_metric(SUBS, "", 2.0).await;
    let rss_before = gw.rss_kib();
    // The slow client never reads: its socket buffers fill, then its queue of 8 frames.
    publish_until_a_slow_consumer_closes(&gw, &mut fast, "firehose").await;
    let growth_mib = gw.rss_kib().saturating_sub(rss_before) / 1024;
    assert!(growth_mib < 64, "gateway RSS grew by {growth_mib} MiB");
    // The slow client now reads what reached it, then the 1013 close.
    assert_eq!(slow.close_code().await, Some(1013));
    // The operator's log names the flag.
    let line = gw.wait_log("slow consumer since").await;
    assert!(
        line.contains("1 connection(s) closed with 1013")
            && line.contains("--queue-frames 8 (PUSHFLEET_QUEUE_FRAMES)"),
        "{line}"
    );
    // The fast one is still served.
    gw.publish_ok(json!({"channel":"firehose","data":"after"}))
        .await;
    assert_eq!(messages(&fast.json().await), vec![json!("after")]);
}

#[tokio::test]
async fn connection_limit_answers_503_then_frees_up() {
    let gw = Gateway::builder()
        .arg("--max-connections", 2)
        .capture_log()
        .start()
        .await;
    let c1 = Client::connect(&gw.ws_url(""), None).await;
    let _c2 = Client::connect(&gw.ws_url(""), None).await;
    let err = Client::try_connect(&gw.ws_url(""), None)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("503"), "{err}");
    // The operator's log names the limit that refused it.
    let line = gw.wait_log("server_full").await;
    assert!(
        line.contains("1 WebSocket upgrade(s) refused")
            && line.contains("--max-connections 2")
            && line.contains("client=127.0.0.1"),
        "{line}"
    );
    assert!(
        !line.contains('\x1b'),
        "no colour codes in a piped log: {line:?}"
    );
    drop(c1);
    gw.wait_metric("pushfleet_connections", "", 1.0).await;
    let mut c3 = eventually("a free connection slot", || async {
        Client::try_connect(&gw.ws_url(""), None).await.ok()
    })
    .await;
    assert!(c3.roundtrip(1).await.is_empty());
}

#[tokio::test]
async fn bad_client_input_gets_its_answer_and_the_connection_stays() {
    let gw = Gateway::builder()
        .arg("--max-subscriptions", 2)
        .arg("--max-message-bytes", 1024)
        .arg("--max-commands-per-sec", 1)
        .arg("--command-burst", 20)
        .arg("--merge-window-ms", 0)
        .start()
        .await;
    let mut c = Client::connect(&gw.ws_url("channels=ok,bad%20name"), None).await;
    let code = |v: &Value| v["code"].as_str().unwrap_or("").to_owned();
    let first = c.json().await;
    assert_eq!(
        (first["op"].clone(), code(&first)),
        (json!("error"), "invalid_channel".into())
    );

    let cases: Vec<(&str, &str)> = vec![
        ("{not json", "bad_request"),
        (r#"{"op":"fly","id":4}"#, "bad_request"),
        (r#"{"op":"subscribe","channels":"a"}"#, "bad_request"),
        (r#"{"op":"subscribe","channels":[]}"#, "bad_request"),
        (r#"{"op":"subscribe","channels":["*"]}"#, "invalid_channel"),
        (
            r#"{"op":"subscribe","channels":["a/b"]}"#,
            "invalid_channel",
        ),
        (
            r#"{"op":"subscribe","channels":["a","b","c"]}"#,
            "too_many_subscriptions",
        ),
        (r#"[1,2]"#, "bad_request"),
    ];
    for (input, want) in cases {
        c.send_text(input).await;
        let got = c.json().await;
        assert_eq!(got["op"], "error", "{input}");
        assert_eq!(code(&got), want, "{input} → {got}");
    }
    // The id of an unparseable command is still echoed when it can be read.
    c.send_text(r#"{"op":"fly","id":44}"#).await;
    assert_eq!(c.json().await["id"], 44);
    // Two subscriptions are fine, a third is not.
    c.send_json(json!({"op":"subscribe","channels":["a","b"],"id":1}))
        .await;
    assert_eq!(c.json().await["op"], "subscribed");
    c.send_json(json!({"op":"subscribe","channels":["c"]}))
        .await;
    assert_eq!(code(&c.json().await), "too_many_subscriptions");
    // Still subscribed and delivering.
    gw.publish_ok(json!({"channel":"a","data":1})).await;
    assert_eq!(messages(&c.json().await), vec![json!(1)]);

    // Rate limit: the burst is used up; the next commands are refused, not dropped.
    let mut limited = 0;
    for i in 0..25 {
        c.send_json(json!({"op":"ping","id":i})).await;
    }
    for _ in 0..25 {
        let v = c.json().await;
        if code(&v) == "rate_limited" {
            limited += 1;
        }
    }
    assert!(limited >= 1, "no command was rate limited");

    // A message over --max-message-bytes closes with 1009; others are unaffected.
    let mut other = Client::connect(&gw.ws_url(""), None).await;
    let mut big = Client::connect(&gw.ws_url(""), None).await;
    big.send_text(&format!(r#"{{"op":"ping","pad":"{}"}}"#, "x".repeat(2000)))
        .await;
    assert_eq!(big.close_code().await, Some(1009));
    assert!(other.roundtrip(2).await.is_empty());
    assert_eq!(
        gw.metric("pushfleet_connections_closed_total", "reason=\"too_big\"")
            .await,
        1.0
    );
}

#[tokio::test]
async fn bad_publish_requests_get_json_errors_and_keys_rotate() {
    let gw = Gateway::builder()
        .arg("--max-publish-bytes", 2048)
        .env("PUSHFLEET_API_KEY", "old-key-123,new-key-456")
        .start()
        .await;
    let auth_new = ("Authorization", "Bearer new-key-456");
    let ct = ("Content-Type", "application/json");
    let post = |headers: Vec<(&'static str, &'static str)>, body: String| {
        let addr = gw.internal;
        async move {
            http::request(addr, "POST", "/api/publish", &headers, body.as_bytes())
                .await
                .unwrap()
        }
    };
    let ok = r#"{"channel":"a","data":1}"#.to_string();
    type Case = (Vec<(&'static str, &'static str)>, String, u16, &'static str);
    let cases: Vec<Case> = vec![
        (vec![ct], ok.clone(), 401, "unauthorized"),
        (
            vec![ct, ("Authorization", "Bearer wrong-key-000")],
            ok.clone(),
            401,
            "unauthorized",
        ),
        (
            vec![ct, ("Authorization", "Basic new-key-456")],
            ok.clone(),
            401,
            "unauthorized",
        ),
        (
            vec![ct, ("Authorization", "Bearernew-key-456")],
            ok.clone(),
            401,
            "unauthorized",
        ),
        (vec![auth_new], ok.clone(), 415, "unsupported_media_type"),
        (
            vec![auth_new, ("Content-Type", "text/plain")],
            ok.clone(),
            415,
            "unsupported_media_type",
        ),
        (vec![auth_new, ct], "{nope".into(), 400, "bad_json"),
        // A positional array is none of the forms (serde's derive alone took it as a
        // channel and its data).
        (
            vec![auth_new, ct],
            r#"["a",null,false,1]"#.into(),
            400,
            "bad_json",
        ),
        (
            vec![auth_new, ct],
            r#"[{"channel":"a","data":1}]"#.into(),
            400,
            "bad_json",
        ),
        (
            vec![auth_new, ct],
            r#"{"channel":"a b","data":1}"#.into(),
            400,
            "invalid_channel",
        ),
        (
            vec![auth_new, ct],
            r#"{"channel":"a"}"#.into(),
            400,
            "bad_request",
        ),
        (
            vec![auth_new, ct],
            format!(r#"{{"channel":"a","data":"{}"}}"#, "x".repeat(4096)),
            413,
            "payload_too_large",
        ),
        (
            vec![auth_new, ct],
            format!("{}1{}", "[".repeat(600), "]".repeat(600)),
            400,
            "bad_json",
        ),
        (
            vec![auth_new, ct],
            format!(
                "{{\"channel\":\"a\",\"data\":{}1{}}}",
                "[".repeat(100),
                "]".repeat(100)
            ),
            400,
            "bad_request",
        ),
    ];
    for (headers, body, status, code) in cases {
        let r = post(headers.clone(), body.clone()).await;
        assert_eq!(
            (r.status, r.error_code()),
            (status, code.to_owned()),
            "{headers:?} {:.60}",
            body
        );
    }
    // Both keys work (rotation), with the scheme in any case (RFC 9110 §11.1; `bearer`
    // got 401).
    for key in [
        "Bearer old-key-123",
        "Bearer new-key-456",
        "bearer old-key-123",
        "BEARER  new-key-456",
    ] {
        let r = post(vec![ct, ("Authorization", key)], ok.clone()).await;
        assert_eq!(r.status, 202, "{}", r.body);
        assert_eq!(r.json(), json!({"published": 1}));
    }
    let r = http::get(gw.internal, "/api/publish").await;
    assert_eq!(
        (r.status, r.error_code()),
        (405, "method_not_allowed".to_owned())
    );
    let r = http::get(gw.internal, "/nope").await;
    assert_eq!((r.status, r.error_code()), (404, "not_found".to_owned()));
    let r = http::get(gw.public, "/ws").await;
    assert_eq!(
        (r.status, r.error_code()),
        (400, "bad_handshake".to_owned())
    );
    // A key that is not 16 bytes in base64 (RFC 6455 §4.2.1) was upgraded all the same.
    let upgrade = |key: &'static str| {
        let addr = gw.public;
        async move {
            let headers = [
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", key),
            ];
            // Bounded: an upgraded connection would not end by itself.
            within(
                "the upgrade's answer",
                http::request(addr, "GET", "/ws?channels=a", &headers, b""),
            )
            .await
            .unwrap()
        }
    };
    // Another protocol version: 426 naming the one spoken (RFC 6455 §4.4; it was a 400
    // without the header).
    let r = within(
        "the upgrade's answer",
        http::request(
            gw.public,
            "GET",
            "/ws",
            &[
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "8"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
            b"",
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        (r.status, r.error_code(), r.header("sec-websocket-version")),
        (426, "bad_handshake".to_owned(), Some("13"))
    );
    let r = upgrade("short").await;
    assert_eq!(
        (r.status, r.error_code()),
        (400, "bad_handshake".to_owned()),
        "{}",
        r.body
    );
    assert!(r.body.contains("Sec-WebSocket-Key"), "{}", r.body);
    assert_eq!(
        gw.metric("pushfleet_publish_requests_total", "status=\"401\"")
            .await,
        4.0
    );
}

/// A gateway with `--drain-secs drain_secs` and 20 connections, sent SIGTERM: returns
/// once its readiness has dropped, with the time the signal was sent.
async fn draining(drain_secs: u64) -> (Gateway, Vec<Client>, std::time::Instant) {
    let gw = Gateway::builder()
        .arg("--drain-secs", drain_secs)
        .start()
        .await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(Client::connect(&gw.ws_url("channels=d"), None).await);
    }
    gw.wait_metric("pushfleet_connections", "", 20.0).await;
    assert_eq!(http::get(gw.public, "/readyz").await.status, 200);
    let sent = std::time::Instant::now();
    gw.terminate();
    // Readiness drops at once and stays down.
    eventually("readyz 503", || async {
        (http::get(gw.public, "/readyz").await.status == 503).then_some(())
    })
    .await;
    (gw, clients, sent)
}

#[tokio::test]
async fn sigterm_drains_with_1001_and_exits_zero() {
    let (mut gw, mut clients, sent) = draining(6).await;
    // New upgrades are refused.
    let err = Client::try_connect(&gw.ws_url(""), None)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("503"), "{err}");
    for c in &mut clients {
        assert_eq!(c.close_code().await, Some(1001));
    }
    let code = within("gateway exit", gw.wait_exit(Duration::from_secs(15))).await;
    assert_eq!(code, Some(0));
    // Every client answered its close, so the gateway did not need the whole period.
    assert!(
        sent.elapsed() < Duration::from_secs(6),
        "exited after the drain deadline: {:?}",
        sent.elapsed()
    );
}

/// A second SIGTERM (or Ctrl-C) during a drain ends the process at once, with the code of
/// a process that signal killed; it was ignored, and this drain would have taken ~54 s.
#[tokio::test]
async fn a_second_sigterm_exits_at_once() {
    // Ten waves 6 s apart: the last connections would get their 1001 after ~54 s.
    let (mut gw, _clients, _) = draining(120).await;
    let sent = std::time::Instant::now();
    gw.terminate();
    let code = within("gateway exit", gw.wait_exit(Duration::from_secs(15))).await;
    assert_eq!(
        code,
        Some(128 + 15),
        "exit code of a process SIGTERM killed"
    );
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );
}

#[tokio::test]
async fn silent_client_is_dropped_after_the_idle_timeout() {
    let gw = Gateway::builder()
        .arg("--ping-interval-secs", 1)
        .arg("--idle-timeout-secs", 2)
        .start()
        .await;
    // Never polled, so it never answers the server's pings.
    let mut silent = Client::connect(&gw.ws_url(""), None).await;
    let mut lively = Client::connect(&gw.ws_url(""), None).await;
    let reader = tokio::spawn(async move {
        // Reading answers pings automatically; keep it up until the idle close is seen.
        let _ = lively.next_within(Duration::from_secs(4)).await;
        lively
    });
    gw.wait_metric("pushfleet_connections_closed_total", "reason=\"idle\"", 1.0)
        .await;
    assert_eq!(silent.close_code().await, Some(1001));
    let mut lively = within("reader task", reader).await.unwrap();
    assert!(
        lively.roundtrip(1).await.is_empty(),
        "the answering client stays"
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let gw = Gateway::start().await;
    let r = http::get(gw.public, "/healthz").await;
    assert_eq!((r.status, r.json()["status"].clone()), (200, json!("ok")));
    let r = http::get(gw.public, "/readyz").await;
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (200, json!("ready"))
    );
    let r = http::get(gw.public, "/").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Pushfleet"));
    let r = http::get(gw.internal, "/metrics").await;
    assert!(r.body.contains("pushfleet_connections "));
    // HEAD answers as GET does, headers only (monitors and load balancers probe with it).
    for (addr, path) in [
        (gw.public, "/healthz"),
        (gw.public, "/readyz"),
        (gw.public, "/"),
        (gw.internal, "/metrics"),
    ] {
        let r = within("a HEAD answer", http::request(addr, "HEAD", path, &[], b""))
            .await
            .unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, ""), "HEAD {path}");
        assert!(
            r.headers.to_ascii_lowercase().contains("content-length"),
            "HEAD {path}: {}",
            r.headers
        );
    }
    // Any other method: 405 with the `Allow` header RFC 9110 §15.5.6 requires (it had
    // none); an unknown path stays 404 whatever the method.
    for (addr, path, allow) in [
        (gw.public, "/healthz", "GET, HEAD"),
        (gw.public, "/readyz", "GET, HEAD"),
        (gw.public, "/", "GET, HEAD"),
        (gw.public, "/client.js", "GET, HEAD"),
        (gw.public, "/client.d.ts", "GET, HEAD"),
        (gw.public, "/ws", "GET"),
        (gw.internal, "/metrics", "GET, HEAD"),
        (gw.internal, "/healthz", "GET, HEAD"),
        (gw.internal, "/api/publish", "POST"),
    ] {
        for method in ["DELETE", "PUT"] {
            let r = within("a 405", http::request(addr, method, path, &[], b""))
                .await
                .unwrap();
            assert_eq!(
                (r.status, r.error_code(), r.header("allow")),
                (405, "method_not_allowed".to_owned(), Some(allow)),
                "{method} {path}: {}",
                r.headers
            );
        }
    }
    let r = within(
        "a 404",
        http::request(gw.internal, "DELETE", "/nope", &[], b""),
    )
    .await
    .unwrap();
    assert_eq!((r.status, r.error_code()), (404, "not_found".to_owned()));
}

#[tokio::test]
async fn bad_configuration_exits_64_naming_flag_and_env() {
    let bin = tests::process::binary("gateway");
    let out = tokio::process::Command::new(&bin)
        .args(["--merge-window-ms", "soon"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--merge-window-ms") && err.contains("PUSHFLEET_MERGE_WINDOW_MS"),
        "{err}"
    );
    let out = tokio::process::Command::new(&bin)
        .env("PUSHFLEET_QUEUE_FRAMES", "0")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PUSHFLEET_QUEUE_FRAMES"), "{err}");
}

/// `/proc/<pid>/task/*`: each runtime thread's CPU list (`Cpus_allowed_list`), parsed.
fn runtime_thread_cpus(pid: i32) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != "tokio-rt-worker" {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        out.extend(
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(cpu_list),
        );
    }
    out
}

/// [`runtime_thread_cpus`] once at least `want` worker threads have started (named
/// themselves and, pinned, pinned themselves, which a thread does as it starts: right
/// after the gateway listens, and on a busy machine even after it has served a request,
/// some may not have yet); `pinned`: counting only threads on one CPU.
async fn started_thread_cpus(pid: i32, want: usize, pinned: bool) -> Vec<Vec<usize>> {
    tests::eventually("the runtime's worker threads", || async {
        let threads = runtime_thread_cpus(pid);
        let started = threads.iter().filter(|c| !pinned || c.len() == 1).count();
        (started >= want).then_some(threads)
    })
    .await
}

/// A kernel CPU list such as `0-3,6` as its CPUs.
fn cpu_list(list: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        cpus.extend(a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap());
    }
    cpus
}

/// `--pin-workers` (docs/OPERATIONS.md): one worker per CPU this process may run on, each
/// pinned to its own, and the gateway delivers as before; without it, none is pinned.
#[tokio::test]
async fn pinned_workers_each_run_on_their_own_cpu_and_deliver() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let allowed = cpu_list(
        status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap(),
    );
    let gw = Gateway::builder()
        .env("PUSHFLEET_PIN_WORKERS", "true")
        .start()
        .await;
    let mut c = Client::connect(&gw.ws_url("channels=a"), None).await;
    gw.wait_metric(SUBS, "", 1.0).await;
    gw.publish_ok(json!({"channel": "a", "data": 1})).await;
    assert_eq!(messages(&c.json().await), vec![json!(1)]);
    let threads = started_thread_cpus(gw.pid(), allowed.len(), true).await;
    let mut pinned: Vec<usize> = threads
        .iter()
        .filter(|cpus| cpus.len() == 1)
        .map(|cpus| cpus[0])
        .collect();
    pinned.sort_unstable();
    assert_eq!(
        pinned, allowed,
        "one worker on each allowed CPU: {threads:?}"
    );
    assert!(
        threads
            .iter()
            .all(|cpus| cpus.len() == 1 || *cpus == allowed),
        "any other runtime thread may run on every CPU: {threads:?}"
    );

    let plain = Gateway::start().await;
    // Unpinned, the runtime starts one worker per CPU the process may use (its quota too).
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = started_thread_cpus(plain.pid(), workers, false).await;
    assert!(
        threads.iter().all(|cpus| *cpus == allowed),
        "unpinned without the flag: {threads:?}"
    );
}

#[tokio::test]
async fn the_open_file_limit_is_raised_and_a_short_one_is_logged() {
    // Started with a soft limit of 512 open files under a hard one of 4,096, as a desktop
    // shell starts programs (1,024 under 524,288 there).
    let gateway = tests::process::binary("gateway");
    let limited = || {
        Gateway::builder()
            .launcher(
                "prlimit".into(),
                &["--nofile=512:4096", gateway.to_str().unwrap()],
            )
            .capture_log()
    };
    let gw = limited().arg("--max-connections", 3_000).start().await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", gw.pid())).unwrap();
    let files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        files[3..5],
        ["4096", "4096"],
        "soft limit raised to the hard one"
    );
    // The default 10,000 connections do not fit in 4,096 files: the log says so, and how
    // many do.
    let short = limited().start().await;
    let line = short.wait_log("open files").await;
    assert!(
        line.contains(
            "--max-connections 10000 needs about 10256 open files, but this process may open 4096"
        ) && line.contains("past about 3840 connections"),
        "{line}"
    );
}
