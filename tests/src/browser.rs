//! A real headless Chromium (Debian's `chromium`), driven over the DevTools protocol with
//! the same WebSocket client the other tests use. Killed on drop.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

use crate::within;

/// Where Debian puts the browser.
pub fn chromium_path() -> String {
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(p).exists() {
            return p.to_owned();
        }
    }
    panic!("chromium is not installed: apt-get install chromium (.ci/run does this)")
}

/// A running headless browser with one page.
pub struct Browser {
    child: Child,
    ws: crate::ws::Stream,
    session: String,
    next_id: AtomicU64,
    _profile: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    /// Starts Chromium and opens `url` in a new page.
    pub async fn open(url: &str) -> Browser {
        let profile = std::env::temp_dir().join(format!(
            "pushfleet-chromium-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let mut child = Command::new(chromium_path())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn chromium");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let endpoint = within("chromium's DevTools endpoint", async {
            loop {
                match lines.next_line().await.unwrap() {
                    Some(l) => {
                        if let Some(rest) = l.split("DevTools listening on ").nth(1) {
                            return rest.trim().to_owned();
                        }
                    }
                    None => panic!("chromium exited before listening"),
                }
            }
        })
        .await;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (ws, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .unwrap();
        let mut b = Browser {
            child,
            ws,
            session: String::new(),
            next_id: AtomicU64::new(1),
            _profile: TempDir(profile),
        };
        let target = b
            .call("Target.createTarget", json!({"url": "about:blank"}), false)
            .await;
        let target_id = target["targetId"].as_str().unwrap().to_owned();
        let attached = b
            .call(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
                false,
            )
            .await;
        b.session = attached["sessionId"].as_str().unwrap().to_owned();
        b.call("Page.enable", json!({}), true).await;
        b.call("Runtime.enable", json!({}), true).await;
        b.navigate(url).await;
        b
    }

    /// Loads `url` and waits for the document to be complete.
    pub async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}), true).await;
        self.wait_for(
            "the page to load",
            "document.readyState === 'complete' && location.href !== 'about:blank'",
        )
        .await;
    }

    /// Sends one DevTools command and returns its result.
    async fn call(&mut self, method: &str, params: Value, in_page: bool) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if in_page {
            msg["sessionId"] = json!(self.session);
        }
        self.ws.send(Message::text(msg.to_string())).await.unwrap();
        within(method, async {
            loop {
                let m = self.ws.next().await.expect("devtools closed").unwrap();
                let Message::Text(t) = m else { continue };
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["id"] == id {
                    if let Some(e) = v.get("error") {
                        panic!("{method} failed: {e}");
                    }
                    return v["result"].clone();
                }
            }
        })
        .await
    }

    /// Evaluates `expr` in the page (awaiting promises); Err with the exception text.
    pub async fn try_eval(&mut self, expr: &str) -> Result<Value, String> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "awaitPromise": true, "returnByValue": true}),
                true,
            )
            .await;
        if let Some(ex) = r.get("exceptionDetails") {
            return Err(ex.to_string());
        }
        Ok(r["result"]["value"].clone())
    }

    /// Evaluates `expr`, panicking on an exception.
    pub async fn eval(&mut self, expr: &str) -> Value {
        self.try_eval(expr)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{expr}"))
    }

    /// Polls `expr` until it is truthy; returns its value.
    pub async fn wait_for(&mut self, what: &str, expr: &str) -> Value {
        within(what, async {
            loop {
                if let Ok(v) = self.try_eval(expr).await {
                    let truthy = !matches!(v, Value::Null | Value::Bool(false))
                        && v != json!(0)
                        && v != json!("");
                    if truthy {
                        return v;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
        })
        .await
    }

    /// Saves a PNG screenshot of the page.
    pub async fn screenshot(&mut self, path: &std::path::Path) {
        let r = self
            .call("Page.captureScreenshot", json!({"format": "png"}), true)
            .await;
        let data = r["data"].as_str().unwrap();
        std::fs::write(path, base64_decode(data)).unwrap();
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

fn base64_decode(s: &str) -> Vec<u8> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut map = [255u8; 256];
    for (i, c) in T.iter().enumerate() {
        map[*c as usize] = i as u8;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| map[*c as usize] != 255) {
        acc = (acc << 6) | u32::from(map[c as usize]);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
