//! Helpers for fleet-level tests: real gateway processes, a real `redis-server` on a
//! free port, real WebSocket clients and a minimal HTTP client. Every helper that starts
//! a process returns a guard that stops it on drop; every wait has an outer timeout.

#![allow(clippy::unwrap_used)]

pub mod bench;
pub mod browser;
pub mod http;
pub mod process;
pub mod raw;
pub mod redis;
pub mod ws;

pub use process::{Gateway, GatewayBuilder};
pub use redis::Redis;
pub use ws::Client;

use std::future::Future;
use std::time::Duration;

/// Default bound on any single wait in a test.
pub const WAIT: Duration = Duration::from_secs(20);

/// Awaits `fut`, failing the test with `what` if it takes longer than [`WAIT`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
}

/// Polls `check` every 20 ms until it returns `Some`, bounded by [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(what, async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// An HS256 connect token for `sub`, granting `channels`, expiring at `exp` (unix seconds).
pub fn token_for(sub: &str, channels: &[&str], exp: u64, secret: &str) -> String {
    let claims = gateway::auth::Claims {
        sub: sub.into(),
        exp,
        nbf: None,
        iat: Some(gateway::wire::now_unix_ms() / 1000),
        channels: channels.iter().map(|c| c.to_string()).collect(),
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}
