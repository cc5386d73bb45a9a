//! Hardening: tokens, permissions, personal channels, origins, limits, and a battery of
//! malformed frames over raw sockets; after each, the gateway still serves a good client.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use gateway::auth::Claims;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tests::raw::{frame, RawWs};
use tests::{http, token_for, within, Client, Gateway, Redis};
use tokio::io::AsyncReadExt;

const SECRET: &str = "security-test-secret-0123456789";

fn now() -> u64 {
    gateway::wire::now_unix_ms() / 1000
}

async fn jwt_gateway(extra: &[(&str, &str)]) -> Gateway {
    let mut b = Gateway::builder()
        .arg("--auth", "jwt")
        .env("PUSHFLEET_JWT_SECRET", SECRET)
        .arg("--merge-window-ms", 0);
    for (k, v) in extra {
        b = b.arg(k, v);
    }
    b.start().await
}

async fn good_client_still_served(gw: &Gateway, c: &mut Client, channel: &str) {
    let marker = gateway::wire::now_unix_ms();
    gw.publish_ok(json!({"channel": channel, "data": {"still": marker}}))
        .await;
    loop {
        let v = c.json().await;
        if v["op"] == "batch" && v["messages"][0]["still"] == marker {
            return;
        }
    }
}

#[tokio::test]
async fn bad_tokens_get_1008_unauthorized_after_the_upgrade() {
    let gw = jwt_gateway(&[]).await;
    let good = token_for("alice", &["news"], now() + 600, SECRET);
    let mut alice = Client::connect(&gw.ws_url(&format!("token={good}&channels=news")), None).await;
    gw.wait_metric("pushfleet_subscriptions", "", 1.0).await;

    let claims = json!({"sub":"mallory","exp": now() + 600,"channels":["*"]}).to_string();
    let cases = vec![
        ("missing", String::new()),
        ("garbage", "token=not-a-jwt".to_owned()),
        (
            "forged",
            format!(
                "token={}",
                token_for("alice", &["news"], now() + 600, "some-other-secret-xyz")
            ),
        ),
        (
            "expired",
            format!(
                "token={}",
                token_for("alice", &["news"], now() - 120, SECRET)
            ),
        ),
        (
            "alg none",
            format!(
                "token={}.{}.",
                URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
                URL_SAFE_NO_PAD.encode(claims.as_bytes())
            ),
        ),
        (
            "hs384",
            format!("token={}", {
                let c = Claims {
                    sub: "a".into(),
                    exp: now() + 600,
                    nbf: None,
                    iat: None,
                    channels: vec![],
                };
                encode(
                    &Header::new(Algorithm::HS384),
                    &c,
                    &EncodingKey::from_secret(SECRET.as_bytes()),
                )
                .unwrap()
            }),
        ),
    ];
    for (name, query) in &cases {
        let mut raw = RawWs::connect(gw.public, &format!("/ws?{query}"), &[]).await;
        assert_eq!(raw.status, 101, "{name}: the upgrade completes");
        assert_eq!(raw.close_code().await, Some(1008), "{name}");
    }
    assert_eq!(
        gw.metric(
            "pushfleet_connections_closed_total",
            "reason=\"unauthorized\""
        )
        .await,
        cases.len() as f64
    );
    good_client_still_served(&gw, &mut alice, "news").await;
}

#[tokio::test]
async fn channel_permissions_and_personal_channels_across_the_fleet() {
    let redis = Redis::start().await;
    let mut gws = Vec::new();
    for _ in 0..2 {
        let gw = jwt_gateway(&[("--redis-url", &redis.url())]).await;
        tests::eventually("ready", || async {
            (http::get(gw.public, "/readyz").await.status == 200).then_some(())
        })
        .await;
        gws.push(gw);
    }
    let alice_tok = token_for("alice", &["news", "room:*", "user:*"], now() + 600, SECRET);
    let mut alice1 = Client::connect(&gws[0].ws_url(&format!("token={alice_tok}")), None).await;
    let mut alice2 = Client::connect(&gws[1].ws_url(&format!("token={alice_tok}")), None).await;
    let code = |v: &Value| v["code"].as_str().unwrap_or("").to_owned();

    for (chs, want) in [
        (json!(["news"]), "subscribed"),
        (json!(["room:42"]), "subscribed"),
        (json!(["user:alice"]), "subscribed"),
        (json!(["sports"]), "forbidden"),
        (json!(["user:bob"]), "forbidden"),
        (json!(["roomy"]), "forbidden"),
        (json!(["news", "sports"]), "forbidden"),
    ] {
        alice1
            .send_json(json!({"op":"subscribe","channels":chs,"id":1}))
            .await;
        let v = alice1.json().await;
        let got = if v["op"] == "error" {
            code(&v)
        } else {
            v["op"].as_str().unwrap().to_owned()
        };
        assert_eq!(got, want, "{chs}");
    }
    alice2
        .send_json(json!({"op":"subscribe","channels":["user:alice"],"id":2}))
        .await;
    assert_eq!(alice2.json().await["op"], "subscribed");
    // Bob cannot listen in on alice.
    let bob_tok = token_for("bob", &["*"], now() + 600, SECRET);
    let mut bob = Client::connect(&gws[0].ws_url(&format!("token={bob_tok}")), None).await;
    bob.send_json(json!({"op":"subscribe","channels":["user:alice"]}))
        .await;
    assert_eq!(code(&bob.json().await), "forbidden");
    bob.send_json(json!({"op":"subscribe","channels":["anything"]}))
        .await;
    assert_eq!(
        bob.json().await["op"],
        "subscribed",
        "a bare * pattern allows every non-personal channel"
    );

    for gw in &gws {
        gw.wait_metric(
            "pushfleet_bus_subscribed_channels",
            "",
            if gw.public == gws[0].public { 4.0 } else { 1.0 },
        )
        .await;
    }
    // A publish to user:alice reaches every connection of alice, on every gateway.
    gws[1]
        .publish_ok(json!({"channel":"user:alice","data":"for alice"}))
        .await;
    for c in [&mut alice1, &mut alice2] {
        let v = c.json().await;
        assert_eq!(
            (v["channel"].clone(), v["messages"].clone()),
            (json!("user:alice"), json!(["for alice"]))
        );
    }
    assert!(bob.roundtrip(3).await.is_empty(), "bob got nothing");
}

#[tokio::test]
async fn token_expiry_closes_the_connection_with_1008() {
    let gw = jwt_gateway(&[]).await;
    // Expires in 1 s; the gateway allows 5 s of leeway, then closes.
    let tok = token_for("carol", &["c"], now() + 1, SECRET);
    let mut c = Client::connect(&gw.ws_url(&format!("token={tok}&channels=c")), None).await;
    let started = std::time::Instant::now();
    assert_eq!(c.close_code().await, Some(1008));
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "closed too early: {:?}",
        started.elapsed()
    );
    assert_eq!(
        gw.metric(
            "pushfleet_connections_closed_total",
            "reason=\"token_expired\""
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_token_that_never_expires_is_served() {
    // `exp` 2^64 − 1 ("never") and 10^19 s both overflowed the expiry timer's arithmetic:
    // the session panicked and dropped the socket, leaving its connection counted.
    let gw = jwt_gateway(&[]).await;
    for (n, exp) in [u64::MAX, 10_000_000_000_000_000_000]
        .into_iter()
        .enumerate()
    {
        let channel = format!("forever{n}");
        let tok = token_for("dora", &[&channel], exp, SECRET);
        let mut c =
            Client::connect(&gw.ws_url(&format!("token={tok}&channels={channel}")), None).await;
        gw.wait_metric("pushfleet_subscriptions", "", 1.0).await;
        good_client_still_served(&gw, &mut c, &channel).await;
        drop(c);
        gw.wait_metric("pushfleet_connections", "", 0.0).await;
    }
}

#[tokio::test]
async fn origins_connect_rate_and_unfinished_handshakes() {
    let gw = Gateway::builder()
        .arg(
            "--allowed-origins",
            "https://app.example,https://admin.example",
        )
        .arg("--max-connects-per-ip-per-sec", 1)
        .arg("--connect-burst-per-ip", 4)
        .arg("--handshake-timeout-secs", 1)
        .capture_log()
        .start()
        .await;
    let mut good = Client::connect(&gw.ws_url("channels=o"), None).await; // 1st token
    let r = RawWs::connect(gw.public, "/ws", &[("Origin", "https://evil.example")]).await;
    assert_eq!(r.status, 403);
    let r = RawWs::connect(gw.public, "/ws", &[("Origin", "https://app.example")]).await; // 2nd
    assert_eq!(r.status, 101);
    let r = RawWs::connect(gw.public, "/ws", &[]).await; // 3rd: no Origin (not a browser)
    assert_eq!(r.status, 101);
    let r = RawWs::connect(gw.public, "/ws", &[]).await; // 4th
    assert_eq!(r.status, 101);
    let mut limited = RawWs::connect(gw.public, "/ws", &[]).await; // burst used up
    assert_eq!(limited.status, 429);
    let body = limited.body().await;
    assert!(body.contains("rate_limited"), "{body}");
    // The log names the flag behind each refusal, once each here (the first refusal of a
    // limit is logged at once, the next ones summed every 10 s).
    let line = gw.wait_log("origin_not_allowed").await;
    assert!(
        line.contains("1 WebSocket upgrade(s) refused") && line.contains("--allowed-origins"),
        "{line}"
    );
    let line = gw.wait_log("429 rate_limited").await;
    assert!(
        line.contains("--max-connects-per-ip-per-sec 1 after a burst of --connect-burst-per-ip 4")
            && line.contains("client=127.0.0.1"),
        "{line}"
    );

    // An upgrade that never finishes its headers is dropped after the handshake timeout.
    let mut s = tokio::net::TcpStream::connect(gw.public).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    within("slow handshake dropped", s.read_to_end(&mut rest))
        .await
        .unwrap_or(0);
    // Idle keep-alive connections (the refused upgrades above) time out the same way.
    gw.wait_metric_at_least(
        "pushfleet_connections_rejected_total",
        "reason=\"handshake_timeout\"",
        1.0,
    )
    .await;
    assert_eq!(
        gw.metric(
            "pushfleet_connections_rejected_total",
            "reason=\"origin_not_allowed\""
        )
        .await,
        1.0
    );
    assert_eq!(
        gw.metric(
            "pushfleet_connections_rejected_total",
            "reason=\"rate_limited\""
        )
        .await,
        1.0
    );
    good_client_still_served(&gw, &mut good, "o").await;
}

#[tokio::test]
async fn malformed_frames_get_their_close_codes_and_the_gateway_keeps_serving() {
    let gw = Gateway::builder()
        .arg("--max-message-bytes", 4096)
        .arg("--merge-window-ms", 0)
        .start()
        .await;
    let mut good = Client::connect(&gw.ws_url("channels=ok"), None).await;
    gw.wait_metric("pushfleet_subscriptions", "", 1.0).await;

    let huge_len = {
        // A header claiming 2^63-1 bytes of payload.
        let mut f = vec![0x82, 0x80 | 127];
        f.extend_from_slice(&0x7fff_ffff_ffff_ffffu64.to_be_bytes());
        f.extend_from_slice(&[1, 2, 3, 4]);
        f
    };
    let one_mb_header = {
        let mut f = vec![0x81, 0x80 | 127];
        f.extend_from_slice(&(1u64 << 20).to_be_bytes());
        f.extend_from_slice(&[1, 2, 3, 4]);
        f.extend(std::iter::repeat_n(b'a', 8192));
        f
    };
    let endless_fragments = {
        let mut f = frame(false, 0, 1, &[b'a'; 1000], true);
        for _ in 0..20 {
            f.extend(frame(false, 0, 0, &[b'a'; 1000], true));
        }
        f
    };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "invalid UTF-8 text",
            frame(true, 0, 1, b"{\"op\":\"\xff\xfe\"}", true),
            1007,
        ),
        (
            "unmasked client frame",
            frame(true, 0, 1, br#"{"op":"ping"}"#, false),
            1002,
        ),
        ("reserved opcode 3", frame(true, 0, 3, b"x", true), 1002),
        (
            "reserved control opcode 11",
            frame(true, 0, 11, b"x", true),
            1002,
        ),
        (
            "RSV bits without an extension",
            frame(true, 4, 1, b"{}", true),
            1002,
        ),
        ("2^63 length header", huge_len, 1009),
        ("1 MB frame", one_mb_header, 1009),
        ("endless fragments", endless_fragments, 1009),
        ("oversized ping", frame(true, 0, 9, &[0u8; 200], true), 1002),
        ("fragmented ping", frame(false, 0, 9, b"x", true), 1002),
        (
            "continuation without a start",
            frame(true, 0, 0, b"x", true),
            1002,
        ),
    ];
    for (name, bytes, want) in cases {
        let mut raw = RawWs::connect(gw.public, "/ws", &[]).await;
        assert_eq!(raw.status, 101, "{name}");
        raw.send(&bytes).await;
        assert_eq!(raw.close_code().await, Some(want), "{name}");
    }
    good_client_still_served(&gw, &mut good, "ok").await;
}

#[tokio::test]
async fn hostile_commands_get_error_frames_and_the_connection_stays() {
    let gw = Gateway::builder()
        .arg("--max-message-bytes", 8192)
        .arg("--merge-window-ms", 0)
        .start()
        .await;
    let mut c = Client::connect(&gw.ws_url(""), None).await;
    let code = |v: &Value| v["code"].as_str().unwrap_or("").to_owned();
    let deep = format!("{}{}", "[".repeat(3000), "]".repeat(3000));
    let cases: Vec<(String, &str)> = vec![
        ("{\"op\":".to_owned(), "bad_request"),
        (deep, "bad_request"),
        (
            r#"{"op":"subscribe","channels":[1,2]}"#.to_owned(),
            "bad_request",
        ),
        (
            r#"{"op":"subscribe","channels":{"a":1}}"#.to_owned(),
            "bad_request",
        ),
        (r#"{"op":7}"#.to_owned(), "bad_request"),
        (
            r#"{"op":"ping","id":{"nested":true}}"#.to_owned(),
            "bad_request",
        ),
        (r#""just a string""#.to_owned(), "bad_request"),
        (
            format!(r#"{{"op":"subscribe","channels":["{}"]}}"#, "a".repeat(129)),
            "invalid_channel",
        ),
        (
            r#"{"op":"subscribe","channels":["a\u0000b"]}"#.to_owned(),
            "invalid_channel",
        ),
        (
            r#"{"op":"subscribe","channels":["ümlaut"]}"#.to_owned(),
            "invalid_channel",
        ),
    ];
    for (input, want) in &cases {
        c.send_text(input).await;
        let v = c.json().await;
        assert_eq!(
            (v["op"].as_str(), code(&v).as_str()),
            (Some("error"), *want),
            "{:.60}",
            input
        );
    }
    // Thousands of subscribe commands: the rate limit answers, nothing is dropped silently,
    // and the connection survives.
    let n = 2000;
    for i in 0..n {
        c.send_json(json!({"op":"subscribe","channels":[format!("c{}", i % 50)],"id":i}))
            .await;
    }
    let mut limited = 0;
    let mut ok = 0;
    for _ in 0..n {
        let v = c.json().await;
        match v["op"].as_str() {
            Some("subscribed") => ok += 1,
            Some("error") if code(&v) == "rate_limited" => limited += 1,
            other => panic!("unexpected {other:?}: {v}"),
        }
    }
    assert_eq!(ok + limited, n, "every command got an answer");
    assert!(limited > 0 && ok > 0, "ok={ok} limited={limited}");
    // Still connected and still served: a channel subscribed during the flood delivers.
    gw.publish_ok(json!({"channel":"c0","data":1})).await;
    assert_eq!(c.json().await["messages"], json!([1]));
}

/// Behind a trusted proxy the per-address connect limit counts the address the proxy
/// forwarded, not the proxy; a client cannot escape its limit by forging entries to the
/// left of the proxy's, and without `--trusted-proxies` the header is ignored.
#[tokio::test]
async fn connect_limit_counts_forwarded_clients_only_behind_trusted_proxies() {
    let limited = || {
        Gateway::builder()
            .arg("--max-connects-per-ip-per-sec", 1)
            .arg("--connect-burst-per-ip", 2)
    };
    let gw = limited()
        .arg("--trusted-proxies", "127.0.0.0/8")
        .start()
        .await;
    let status = |gw: &Gateway, xff: &str| {
        let (addr, xff) = (gw.public, xff.to_owned());
        async move {
            let headers: &[(&str, &str)] = if xff.is_empty() {
                &[]
            } else {
                &[("X-Forwarded-For", &xff)]
            };
            RawWs::connect(addr, "/ws", headers).await.status
        }
    };
    assert_eq!(status(&gw, "203.0.113.5").await, 101);
    assert_eq!(status(&gw, "203.0.113.5").await, 101);
    assert_eq!(
        status(&gw, "203.0.113.5").await,
        429,
        "its burst is used up"
    );
    assert_eq!(
        status(&gw, "198.51.100.1, 203.0.113.5").await,
        429,
        "forged entry"
    );
    assert_eq!(
        status(&gw, "203.0.113.6").await,
        101,
        "another client, same proxy"
    );
    assert_eq!(status(&gw, "").await, 101, "no header: the proxy itself");

    let plain = limited().start().await;
    assert_eq!(status(&plain, "203.0.113.5").await, 101);
    assert_eq!(status(&plain, "203.0.113.6").await, 101);
    assert_eq!(status(&plain, "203.0.113.7").await, 429, "all one peer");
}
