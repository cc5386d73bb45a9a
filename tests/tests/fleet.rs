//! A fleet: several gateway processes on one real `redis-server`, `pushctl`, and Redis
//! failures while clients stay connected.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::process::{pushctl, pushctl_ok, pushctl_stdin};
use tests::{eventually, http, within, Client, Gateway, Redis};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

async fn fleet(redis: &Redis, n: usize, extra: &[(&str, &str)]) -> Vec<Gateway> {
    let mut gws = Vec::new();
    for _ in 0..n {
        let mut b = Gateway::builder().arg("--redis-url", redis.url());
        if !extra.iter().any(|(k, _)| *k == "--merge-window-ms") {
            b = b.arg("--merge-window-ms", 100);
        }
        for (k, v) in extra {
            b = b.arg(k, v);
        }
        let gw = b.start().await;
        wait_ready(&gw).await;
        gws.push(gw);
    }
    gws
}

async fn wait_ready(gw: &Gateway) {
    eventually("gateway ready", || async {
        (http::get(gw.public, "/readyz").await.status == 200).then_some(())
    })
    .await
}

/// Runs `pushctl publish --redis URL CHANNEL` with NDJSON on stdin.
async fn pushctl_ndjson(redis_url: &str, channel: &str, lines: &[Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let out = pushctl_stdin(&["publish", "--redis", redis_url, channel], text.as_bytes()).await;
    assert!(
        out.status.success(),
        "pushctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn every_client_on_every_gateway_gets_its_channel_once_in_order() {
    let redis = Redis::start().await;
    let gws = fleet(&redis, 3, &[]).await;
    let channels = ["alpha", "beta", "gamma"];
    // 30 clients: gateway i % 3, channel (i / 3) % 3: 10 per gateway, every channel on
    // every gateway.
    let mut clients = Vec::new();
    for i in 0..30 {
        let ch = channels[(i / 3) % 3];
        let gw = &gws[i % 3];
        clients.push((
            ch,
            Client::connect(&gw.ws_url(&format!("channels={ch}")), None).await,
        ));
    }
    for gw in &gws {
        gw.wait_metric("pushfleet_subscriptions", "", 10.0).await;
        gw.wait_metric("pushfleet_bus_subscribed_channels", "", 3.0)
            .await;
    }
    // 100 per channel through pushctl → Redis, and 100 per channel through gateway 0's
    // HTTP endpoint, concurrently.
    let via_cli = async {
        for ch in channels {
            let lines: Vec<Value> = (0..100)
                .map(|n| json!({"src":"cli","ch":ch,"n":n}))
                .collect();
            pushctl_ndjson(&redis.url(), ch, &lines).await;
        }
    };
    let via_http = async {
        for n in 0..100 {
            for ch in channels {
                gws[0]
                    .publish_ok(json!({"channel":ch,"data":{"src":"http","ch":ch,"n":n}}))
                    .await;
            }
        }
    };
    tokio::join!(via_cli, via_http);

    for (ch, c) in &mut clients {
        let mut got: Vec<Value> = Vec::new();
        while got.len() < 200 {
            let batch = c.json().await;
            assert_eq!(batch["channel"], *ch);
            got.extend(batch["messages"].as_array().unwrap().iter().cloned());
        }
        assert_eq!(got.len(), 200, "exactly 200 on {ch}");
        assert!(c.roundtrip(1).await.is_empty(), "nothing after the 200");
        let mut per_src: HashMap<String, Vec<i64>> = HashMap::new();
        for m in &got {
            assert_eq!(m["ch"], *ch, "channel isolation");
            per_src
                .entry(m["src"].as_str().unwrap().to_owned())
                .or_default()
                .push(m["n"].as_i64().unwrap());
        }
        let expect: Vec<i64> = (0..100).collect();
        assert_eq!(per_src["cli"], expect, "pushctl messages once, in order");
        assert_eq!(per_src["http"], expect, "HTTP messages once, in order");
    }
}

#[tokio::test]
async fn redis_subscriptions_follow_local_subscribers_with_linger() {
    let redis = Redis::start().await;
    let gws = fleet(&redis, 2, &[("--unsubscribe-linger-ms", "500")]).await;
    let chans = || async { redis.pubsub_channels("pushfleet:*").await };
    // Only the broadcast channel until someone subscribes.
    assert_eq!(chans().await, vec!["pushfleet:b"]);
    let mut c = Client::connect(&gws[0].ws_url(""), None).await;
    c.send_json(json!({"op":"subscribe","channels":["lonely"],"id":1}))
        .await;
    assert_eq!(c.json().await["op"], "subscribed");
    eventually("lonely subscribed on Redis", || async {
        (chans().await == ["pushfleet:b", "pushfleet:c:lonely"]).then_some(())
    })
    .await;
    // Gateway 1 has no subscriber: it subscribed to nothing but broadcast.
    assert_eq!(
        gws[1].metric("pushfleet_bus_subscribed_channels", "").await,
        0.0
    );

    c.send_json(json!({"op":"unsubscribe","channels":["lonely"],"id":2}))
        .await;
    assert_eq!(c.json().await["op"], "unsubscribed");
    let left = Instant::now();
    eventually("lonely unsubscribed after the linger", || async {
        (chans().await == ["pushfleet:b"]).then_some(())
    })
    .await;
    assert!(
        left.elapsed() >= Duration::from_millis(450),
        "left before the linger: {:?}",
        left.elapsed()
    );

    // Rejoining within the linger keeps the subscription without a gap.
    c.send_json(json!({"op":"subscribe","channels":["back"],"id":3}))
        .await;
    assert_eq!(c.json().await["op"], "subscribed");
    gws[0]
        .wait_metric("pushfleet_bus_subscribed_channels", "", 1.0)
        .await;
    c.send_json(json!({"op":"unsubscribe","channels":["back"],"id":4}))
        .await;
    c.send_json(json!({"op":"subscribe","channels":["back"],"id":5}))
        .await;
    assert_eq!(c.json().await["op"], "unsubscribed");
    assert_eq!(c.json().await["op"], "subscribed");
    // A probe channel left after "back" left: once Redis drops the probe, the linger of
    // "back" (which started earlier) is over too, and "back" must still be there.
    c.send_json(json!({"op":"subscribe","channels":["probe"],"id":6}))
        .await;
    assert_eq!(c.json().await["op"], "subscribed");
    eventually("probe subscribed on Redis", || async {
        chans()
            .await
            .contains(&"pushfleet:c:probe".to_owned())
            .then_some(())
    })
    .await;
    c.send_json(json!({"op":"unsubscribe","channels":["probe"],"id":7}))
        .await;
    assert_eq!(c.json().await["op"], "unsubscribed");
    eventually("probe gone after its linger", || async {
        (!chans().await.contains(&"pushfleet:c:probe".to_owned())).then_some(())
    })
    .await;
    assert_eq!(chans().await, vec!["pushfleet:b", "pushfleet:c:back"]);
    // Disconnecting counts as leaving.
    drop(c);
    eventually("back unsubscribed after disconnect", || async {
        (chans().await == ["pushfleet:b"]).then_some(())
    })
    .await;
}

/// A connection the gateway closes leaves its channels, on Redis too, as soon as its
/// close frame goes out, not when its socket closes: the gateway waits up to 5 s for the
/// client's answer, and this client gives none until the end.
#[tokio::test]
async fn a_closing_connection_leaves_redis_before_its_socket_closes() {
    let redis = Redis::start().await;
    let gws = fleet(
        &redis,
        1,
        &[
            ("--unsubscribe-linger-ms", "0"),
            ("--ping-interval-secs", "1"),
            ("--idle-timeout-secs", "2"),
        ],
    )
    .await;
    let gw = &gws[0];
    let chans = || async { redis.pubsub_channels("pushfleet:*").await };
    let mut raw = tests::raw::RawWs::connect(gw.public, "/ws?channels=closing", &[]).await;
    assert_eq!(raw.status, 101, "{}", raw.head);
    eventually("closing subscribed on Redis", || async {
        (chans().await == ["pushfleet:b", "pushfleet:c:closing"]).then_some(())
    })
    .await;
    // The client answers nothing, pings included: after 2 s the gateway closes it as idle
    // (1001) and reads on for its close.
    assert_eq!(raw.close_code().await, Some(1001));
    eventually("closing unsubscribed on Redis", || async {
        (chans().await == ["pushfleet:b"]).then_some(())
    })
    .await;
    assert_eq!(gw.metric("pushfleet_subscriptions", "").await, 0.0);
    assert_eq!(
        gw.metric("pushfleet_connections", "").await,
        1.0,
        "the socket is still open, waiting for the client's close"
    );
    raw.send(&tests::raw::frame(true, 0, 8, &1001u16.to_be_bytes(), true))
        .await;
    assert_eq!(raw.read_frame().await, None);
    gw.wait_metric("pushfleet_connections", "", 0.0).await;
}

#[tokio::test]
async fn redis_outage_drops_readiness_fails_fast_and_recovers_without_reconnects() {
    let mut redis = Redis::start().await;
    let gws = fleet(&redis, 2, &[]).await;
    let mut clients = vec![
        Client::connect(&gws[0].ws_url("channels=live"), None).await,
        Client::connect(&gws[1].ws_url("channels=live"), None).await,
    ];
    for gw in &gws {
        gw.wait_metric("pushfleet_bus_subscribed_channels", "", 1.0)
            .await;
    }
    gws[0]
        .publish_ok(json!({"channel":"live","data":"before"}))
        .await;
    for c in &mut clients {
        assert_eq!(c.json().await["messages"], json!(["before"]));
    }

    redis.kill().await;
    for gw in &gws {
        eventually("readyz 503 during the outage", || async {
            (http::get(gw.public, "/readyz").await.status == 503).then_some(())
        })
        .await;
    }
    let t = Instant::now();
    let r = gws[1]
        .publish(json!({"channel":"live","data":"lost"}))
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (503, "bus_unavailable".to_owned())
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "503 took {:?}",
        t.elapsed()
    );
    // Clients are still connected.
    for c in &mut clients {
        assert!(c.roundtrip(1).await.is_empty());
    }

    redis.restart().await;
    for gw in &gws {
        wait_ready(gw).await;
        gw.wait_metric("pushfleet_bus_subscribed_channels", "", 1.0)
            .await;
        assert!(gw.metric("pushfleet_bus_reconnects_total", "").await >= 1.0);
    }
    // The pool may hold a dead connection for one more try; the publish must succeed soon.
    eventually("publish accepted after the restart", || async {
        (gws[1]
            .publish(json!({"channel":"live","data":"after"}))
            .await
            .status
            == 202)
            .then_some(())
    })
    .await;
    for c in &mut clients {
        let mut got = Vec::new();
        while !got.contains(&json!("after")) {
            got.extend(
                c.json().await["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .cloned(),
            );
        }
    }
    for gw in &gws {
        assert_eq!(
            gw.metric("pushfleet_connections_accepted_total", "").await,
            1.0,
            "no client reconnected"
        );
    }
}

#[tokio::test]
async fn garbage_on_redis_is_counted_and_survived() {
    let redis = Redis::start().await;
    let gws = fleet(&redis, 1, &[("--merge-window-ms", "0")]).await;
    let gw = &gws[0];
    let mut c = Client::connect(&gw.ws_url("channels=g"), None).await;
    gw.wait_metric("pushfleet_bus_subscribed_channels", "", 1.0)
        .await;
    let bad_version = rmp_serde::to_vec_named(&json!({"v": 9, "d": [1], "t": 0})).unwrap();
    let not_json = gateway::wire::Envelope::new(b"{nope", 0).encode();
    let garbage: Vec<&[u8]> = vec![
        b"",
        b"\xc1",
        b"not msgpack at all",
        &bad_version,
        &not_json,
        &[0x92, 0xc4],
    ];
    for g in &garbage {
        redis.publish_raw("pushfleet:c:g", g).await;
    }
    redis.publish_raw("pushfleet:b", b"\xff\xff").await;
    gw.wait_metric(
        "pushfleet_messages_dropped_total",
        "reason=\"bad_payload\"",
        7.0,
    )
    .await;
    // A valid envelope published by hand (what another language would do) still arrives.
    let good = gateway::wire::Envelope::new(br#"{"ok":true}"#, 1).encode();
    redis.publish_raw("pushfleet:c:g", &good).await;
    assert_eq!(c.json().await["messages"], json!([{"ok":true}]));
}

#[tokio::test]
async fn paced_redis_reads_lose_nothing_and_hold_no_reply_back() {
    // A 1 s window paces the subscriber's reads 100 ms apart while messages keep coming.
    let redis = Redis::start().await;
    let gws = fleet(&redis, 1, &[("--merge-window-ms", "1000")]).await;
    let gw = &gws[0];
    let mut a = Client::connect(&gw.ws_url("channels=steady"), None).await;
    gw.wait_metric("pushfleet_bus_subscribed_channels", "", 1.0)
        .await;
    // A message every 20 ms for 1.2 s (load pacing, not synchronisation): the reads stay
    // paced, so a SUBSCRIBE sent meanwhile must not wait for its reply behind them.
    let url = redis.url();
    let steady = tokio::spawn(async move {
        let redis = deadpool_redis::redis::Client::open(url).unwrap();
        let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
        let keys = gateway::bus::redis::Keys::new("pushfleet");
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for n in 0..60 {
            tick.tick().await;
            gateway::bus::redis::publish_one(
                &mut conn,
                &keys,
                "steady",
                json!({"n": n}).to_string().as_bytes(),
            )
            .await
            .unwrap();
        }
    });
    gw.wait_metric_at_least("pushfleet_bus_paced_reads_total", "", 1.0)
        .await;
    let mut b = Client::connect(&gw.ws_url("channels=late"), None).await;
    gw.wait_metric("pushfleet_bus_subscribed_channels", "", 2.0)
        .await;
    pushctl_ndjson(&redis.url(), "late", &[json!({"late": true})]).await;
    assert_eq!(
        next_batch(&mut b).await["messages"],
        json!([{"late": true}])
    );
    within("steady publisher", steady).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 60 {
        let batch = next_batch(&mut a).await;
        got.extend(
            batch["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["n"].clone()),
        );
    }
    let want: Vec<Value> = (0..60).map(|n| json!(n)).collect();
    assert_eq!(got, want, "every message, once, in order");
    assert!(gw.metric("pushfleet_bus_paced_reads_total", "").await >= 1.0);
    assert_eq!(gw.metric("pushfleet_bus_reconnects_total", "").await, 0.0);
}

#[tokio::test]
async fn broadcast_reaches_every_client_on_every_gateway() {
    let redis = Redis::start().await;
    let gws = fleet(&redis, 3, &[]).await;
    let mut clients = Vec::new();
    for gw in &gws {
        clients.push(Client::connect(&gw.ws_url(""), None).await);
        clients.push(Client::connect(&gw.ws_url("channels=x"), None).await);
    }
    for gw in &gws {
        gw.wait_metric("pushfleet_connections", "", 2.0).await;
    }
    let url = redis.url();
    pushctl_ok(
        &["publish", "--redis", &url, "--broadcast", r#"{"all":true}"#],
        &[],
    )
    .await;
    gws[2].publish_ok(json!({"broadcast":true,"data":2})).await;
    for c in &mut clients {
        let mut got = Vec::new();
        while got.len() < 2 {
            let b = c.json().await;
            assert_eq!(b["channel"], "*");
            got.extend(b["messages"].as_array().unwrap().iter().cloned());
        }
        assert_eq!(got, vec![json!({"all":true}), json!(2)]);
    }
}

#[tokio::test]
async fn pushctl_http_tail_and_exit_codes() {
    let gw = Gateway::builder()
        .arg("--merge-window-ms", 0)
        .arg("--api-key", "pushctl-key-1")
        .start()
        .await;
    let bin = tests::process::binary("pushctl");
    let tail = tokio::process::Command::new(&bin)
        .args(["tail", "--url", &gw.ws_url(""), "--count", "3", "t"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    gw.wait_metric("pushfleet_subscriptions", "", 1.0).await;
    let url = format!("http://{}", gw.internal);
    pushctl_ok(
        &["publish", "--url", &url, "--count", "3", "t", r#"{"n":1}"#],
        &[("PUSHFLEET_API_KEY", "pushctl-key-1")],
    )
    .await;
    let out = within("pushctl tail", tail.wait_with_output())
        .await
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, vec![json!({"channel":"t","data":{"n":1}}); 3]);

    // Wrong key: exit 1 with the gateway's reason on one line.
    let out = pushctl(
        &["publish", "--url", &url, "--api-key", "nope-nope", "t", "1"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    // Failures name the URL without its secrets (the password and the token were printed).
    for (args, shown) in [
        (
            vec![
                "publish",
                "--redis",
                "redis://:s3cret-pw@127.0.0.1:1",
                "t",
                "1",
            ],
            "redis://:****@127.0.0.1:1",
        ),
        (
            vec!["tail", "--url", "ws://127.0.0.1:1/ws?token=s3cret-tok", "t"],
            "ws://127.0.0.1:1/ws?token=****",
        ),
        (
            vec![
                "publish",
                "--url",
                "http://me:s3cret-pw@127.0.0.1:1",
                "t",
                "1",
            ],
            "--url takes no user:password@",
        ),
    ] {
        let out = pushctl(&args, &[]).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            !err.contains("s3cret") && err.contains(shown),
            "{args:?}: {err}"
        );
    }
    // A stdin line past 64 MiB (a binary file piped by mistake) is refused as it passes
    // the bound; it was read whole first, however long, and then called "not a JSON value".
    let huge = vec![b'x'; (64 << 20) + 1];
    let out = pushctl_stdin(&["publish", "--url", "http://127.0.0.1:1", "t"], &huge).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("stdin line 1: longer than 64 MiB"), "{err}");
    // Usage errors: exit 2.
    for args in [
        vec!["publish", "t", "1"],
        vec!["publish", "--url", &url],
        vec![
            "publish", "--url", &url, "--rate", "inf", "--count", "2", "t", "1",
        ],
        vec!["publish", "--url", &url, "--rate", "0", "t", "1"],
        vec!["publish", "--url", &url, "--count", "0", "t", "1"],
        vec!["tail", "--count", "0", "t"],
    ] {
        let out = pushctl(&args, &[]).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    // Bad JSON data: exit 1.
    let out = pushctl(
        &[
            "publish",
            "--url",
            &url,
            "--api-key",
            "pushctl-key-1",
            "t",
            "{bad",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
}

/// `pushctl tail … | head -1`: once the reader of its output has gone, tail ends quietly
/// with success, as Unix tools do (it said "Broken pipe" and exited 1).
#[tokio::test]
async fn pushctl_tail_ends_quietly_when_its_reader_goes() {
    let gw = Gateway::builder().arg("--merge-window-ms", 0).start().await;
    let mut tail = tokio::process::Command::new(tests::process::binary("pushctl"))
        .args(["tail", "--url", &gw.ws_url(""), "t"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    gw.wait_metric("pushfleet_subscriptions", "", 1.0).await;
    let mut lines = tokio::io::BufReader::new(tail.stdout.take().unwrap()).lines();
    gw.publish_ok(json!({"channel": "t", "data": 1})).await;
    let first = within("the first line", lines.next_line()).await.unwrap();
    assert_eq!(first.as_deref(), Some(r#"{"channel":"t","data":1}"#));
    drop(lines);
    // Its next write fails; publish until it has noticed and ended.
    let status = within("tail to end", async {
        loop {
            gw.publish_ok(json!({"channel": "t", "data": 2})).await;
            if let Ok(status) = tokio::time::timeout(Duration::from_millis(50), tail.wait()).await {
                break status.unwrap();
            }
        }
    })
    .await;
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(tail.stderr.as_mut().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert!(status.success() && stderr.is_empty(), "{status}: {stderr}");
}

/// `pushctl publish --url` keeps its HTTP connection between messages, and still publishes
/// after the gateway has closed that connection for idling (its header timeout).
#[tokio::test]
async fn pushctl_http_publishes_after_the_gateway_closed_its_idle_connection() {
    let gw = Gateway::builder()
        .arg("--merge-window-ms", 0)
        .arg("--handshake-timeout-secs", 1)
        .start()
        .await;
    let mut c = Client::connect(&gw.ws_url("channels=k"), None).await;
    gw.wait_metric("pushfleet_subscriptions", "", 1.0).await;
    let mut publisher = tokio::process::Command::new(tests::process::binary("pushctl"))
        .args(["publish", "--url", &format!("http://{}", gw.internal), "k"])
        .stdin(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = publisher.stdin.take().unwrap();
    stdin.write_all(b"{\"n\":1}\n").await.unwrap();
    assert_eq!(next_batch(&mut c).await["messages"], json!([{"n": 1}]));
    // The gateway drops the idle kept-open connection once its header timeout passes.
    gw.wait_metric_at_least(
        "pushfleet_connections_rejected_total",
        "reason=\"handshake_timeout\"",
        1.0,
    )
    .await;
    stdin.write_all(b"{\"n\":2}\n").await.unwrap();
    drop(stdin);
    let status = within("pushctl publish", publisher.wait()).await.unwrap();
    assert!(status.success(), "pushctl failed: {status}");
    assert_eq!(next_batch(&mut c).await["messages"], json!([{"n": 2}]));
}

/// The next batch frame, past the acknowledgements before it.
async fn next_batch(c: &mut Client) -> Value {
    loop {
        let v = c.json().await;
        if v["op"] == "batch" {
            return v;
        }
    }
}
