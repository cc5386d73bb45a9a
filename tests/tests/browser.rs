//! The browser client in a real headless Chromium: `/client.js` loaded from a gateway,
//! publishes through the API and through another gateway via Redis, and a gateway that
//! drains and comes back.

use serde_json::{json, Value};
use tests::browser::Browser;
use tests::{http, token_for, Gateway, Redis};

/// Creates `window.pf` subscribed to `channel`, collecting into `window.got` and
/// `window.states`.
fn start_client(ws_url: &str, channel: &str) -> String {
    format!(
        r#"(async () => {{
            const {{ Pushfleet }} = await import("/client.js");
            window.got = []; window.states = []; window.errors = [];
            window.pf = new Pushfleet({ws_url:?}, {{ channels: [{channel:?}] }});
            pf.on("state", (s) => states.push(s));
            pf.on("error", (e) => errors.push(e));
            pf.subscribe({channel:?}, (m, meta) => got.push({{ m, channel: meta.channel }}));
            return true;
        }})()"#
    )
}

async fn wait_open(b: &mut Browser) {
    b.wait_for("client open", "window.pf && pf.state === 'open'")
        .await;
}

#[tokio::test]
async fn page_loads_client_js_and_gets_published_messages_in_order() {
    let gw = Gateway::builder()
        .arg("--merge-window-ms", 50)
        .start()
        .await;
    let mut b = Browser::open(&format!("http://{}/healthz", gw.public)).await;
    b.eval(&start_client(&gw.ws_url(""), "e2e")).await;
    wait_open(&mut b).await;
    gw.wait_metric("pushfleet_subscriptions", "", 1.0).await;
    for i in 0..30 {
        gw.publish_ok(json!({"channel":"e2e","data":{"i":i}})).await;
    }
    b.wait_for("30 messages", "got.length >= 30").await;
    let got = b.eval("got.map((g) => g.m.i)").await;
    let expect: Vec<Value> = (0..30).map(|i| json!(i)).collect();
    assert_eq!(got, Value::Array(expect), "in order, once");
    assert_eq!(
        b.eval("got.every((g) => g.channel === 'e2e')").await,
        json!(true)
    );
    // Unsubscribe from the page: the gateway drops the subscription.
    b.eval("pf.unsubscribe('e2e'); true").await;
    gw.wait_metric("pushfleet_subscriptions", "", 0.0).await;
    assert_eq!(b.eval("errors.length").await, json!(0));
}

#[tokio::test]
async fn page_on_gateway_one_gets_what_gateway_two_publishes_via_redis() {
    let redis = Redis::start().await;
    let mut gws = Vec::new();
    for _ in 0..2 {
        let gw = Gateway::builder()
            .arg("--redis-url", redis.url())
            .arg("--merge-window-ms", 50)
            .start()
            .await;
        gws.push(gw);
    }
    let mut b = Browser::open(&format!("http://{}/healthz", gws[0].public)).await;
    b.eval(&start_client(&gws[0].ws_url(""), "cross")).await;
    wait_open(&mut b).await;
    gws[0]
        .wait_metric("pushfleet_bus_subscribed_channels", "", 1.0)
        .await;
    tests::eventually("gateway 2 ready", || async {
        (http::get(gws[1].public, "/readyz").await.status == 200).then_some(())
    })
    .await;
    for i in 0..10 {
        gws[1].publish_ok(json!({"channel":"cross","data":i})).await;
    }
    b.wait_for("10 messages", "got.length >= 10").await;
    let expect: Vec<Value> = (0..10).map(|i| json!(i)).collect();
    assert_eq!(b.eval("got.map((g) => g.m)").await, Value::Array(expect));
}

#[tokio::test]
async fn client_reconnects_by_itself_after_its_gateway_drains_and_returns() {
    let mut gw = Gateway::builder()
        .arg("--merge-window-ms", 0)
        .arg("--drain-secs", 2)
        .start()
        .await;
    let public = gw.public;
    let mut b = Browser::open(&format!("http://{public}/healthz")).await;
    b.eval(&start_client(&format!("ws://{public}/ws"), "r"))
        .await;
    wait_open(&mut b).await;
    gw.wait_metric("pushfleet_subscriptions", "", 1.0).await;
    gw.publish_ok(json!({"channel":"r","data":"before"})).await;
    b.wait_for("first message", "got.length >= 1").await;

    gw.terminate();
    assert_eq!(
        tests::within(
            "drained gateway exit",
            gw.wait_exit(std::time::Duration::from_secs(10))
        )
        .await,
        Some(0)
    );
    b.wait_for("reconnecting state", "states.includes('reconnecting')")
        .await;
    // The same address comes back.
    let gw2 = Gateway::builder()
        .arg("--merge-window-ms", 0)
        .arg("--listen", public)
        .start()
        .await;
    assert_eq!(gw2.public, public);
    // The client reconnects and resubscribes by itself.
    gw2.wait_metric("pushfleet_subscriptions", "", 1.0).await;
    b.wait_for("open again", "pf.state === 'open'").await;
    gw2.publish_ok(json!({"channel":"r","data":"after"})).await;
    b.wait_for("message after the restart", "got.length >= 2")
        .await;
    assert_eq!(
        b.eval("got.map((g) => g.m)").await,
        json!(["before", "after"])
    );
    let states = b.eval("states").await;
    let s: Vec<&str> = states
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(s.first(), Some(&"open"));
    assert_eq!(s.last(), Some(&"open"));
    assert!(s.contains(&"reconnecting"), "{s:?}");
}

#[tokio::test]
async fn demo_page_shows_live_batches_and_publish_commands() {
    let gw = Gateway::builder()
        .arg("--merge-window-ms", 200)
        .start()
        .await;
    let mut b = Browser::open(&format!("http://{}/?channel=demo", gw.public)).await;
    b.wait_for(
        "demo page connected",
        "document.getElementById('state-text').textContent === 'open'",
    )
    .await;
    // One subscription: broadcasts ("*") need none.
    gw.wait_metric("pushfleet_subscriptions", "", 1.0).await;
    let curl = b.eval("document.getElementById('curl').textContent").await;
    let curl = curl.as_str().unwrap();
    assert!(
        curl.contains(&format!("http://{}/api/publish", gw.internal)),
        "{curl}"
    );
    assert!(curl.contains(r#""channel":"demo""#), "{curl}");
    let now = gateway::wire::now_unix_ms();
    gw.publish_ok(json!({"messages":[
        {"channel":"demo","data":{"hello":"page","ts":now}},
        {"channel":"demo","data":{"hello":"again"}}
    ]}))
    .await;
    b.wait_for(
        "batch shown",
        "document.getElementById('total').textContent === '2'",
    )
    .await;
    let log = b.eval("document.getElementById('log').textContent").await;
    assert!(log.as_str().unwrap().contains("2 messages"), "{log}");
    assert!(
        log.as_str().unwrap().contains(r#""hello":"again""#),
        "{log}"
    );
    b.wait_for(
        "latency shown",
        "document.getElementById('latency').textContent.endsWith('ms')",
    )
    .await;
    if let Ok(dir) = std::env::var("PUSHFLEET_SCREENSHOT_DIR") {
        b.screenshot(&std::path::Path::new(&dir).join("demo.png"))
            .await;
    }
}

/// A channel the token does not grant, among the page's channels at connect: the gateway
/// refuses the whole subscribe for it, and the client used to leave it at that, so the
/// page got nothing at all. Now it asks for each channel alone and drops the refused one.
#[tokio::test]
async fn a_forbidden_channel_does_not_cost_the_page_its_other_channels() {
    const SECRET: &str = "browser-test-secret-0123456789";
    let gw = Gateway::builder()
        .arg("--auth", "jwt")
        .env("PUSHFLEET_JWT_SECRET", SECRET)
        .arg("--merge-window-ms", 0)
        .start()
        .await;
    let exp = gateway::wire::now_unix_ms() / 1000 + 600;
    let token = token_for("erin", &["news"], exp, SECRET);
    let mut b = Browser::open(&format!("http://{}/healthz", gw.public)).await;
    let ws_url = gw.ws_url("");
    b.eval(&format!(
        r#"(async () => {{
            const {{ Pushfleet }} = await import("/client.js");
            window.got = []; window.errors = [];
            window.pf = new Pushfleet({ws_url:?}, {{ token: {token:?}, channels: ["news", "secret"] }});
            pf.on("error", (e) => errors.push(e));
            pf.subscribe("news", (m) => got.push(m));
            return true;
        }})()"#
    ))
    .await;
    wait_open(&mut b).await;
    gw.wait_metric("pushfleet_subscriptions", "", 1.0).await;
    b.wait_for("the refusal", "errors.length >= 1").await;
    assert_eq!(
        b.eval("errors.map((e) => [e.code, e.channels])").await,
        json!([["forbidden", ["secret"]]])
    );
    assert_eq!(b.eval("pf.channels").await, json!(["news"]));
    gw.publish_ok(json!({"channel": "news", "data": "granted"}))
        .await;
    b.wait_for("the news", "got.length >= 1").await;
    assert_eq!(b.eval("got").await, json!(["granted"]));
}
