//! # Pushfleet gateway
//!
//! A WebSocket push gateway: browsers subscribe to channels, backends publish through the
//! bus, and every channel's messages leave as one batch per merge window, encoded once and
//! fanned out over sharded connection sets. The contract is `DESIGN.md`; the README has
//! the same map as below.
//!
//! # Layout
//!
//! ```text
//!  bus (memory | redis) ──> merger ──> flush: encode once ──> hub shards ──> session writers
//!  ws upgrade ──> session reader ──> commands ──> hub (+ bus refcount)
//!  api: /api/publish ──> bus        /metrics, /healthz, /readyz
//! ```
//!
//! - [`config`]: flags and env variables, validated (exit 64 on a bad value).
//! - [`wire`]: protocol, publish body and Redis envelope types shared with `pushctl`.
//! - [`bus`]: where published messages travel; [`merger`]: per-channel windows;
//!   [`flush`] + [`encode`]: one serialization per batch per encoding.
//! - [`hub`]: shards, channel index, bounded per-connection queues.
//! - [`ws`]: upgrade, outbox (direct writes), session (one loop per connection), commands.
//! - [`api`]: HTTP routes; [`server`]: accept loops (each connection's task in
//!   [`repoll`]); [`shutdown`]: drain.
//! - [`metrics`]: Prometheus registry passed to every part; [`proxy`]: the client's
//!   address behind trusted proxies (for the per-address connect limit).

pub mod affinity;
pub mod api;
pub mod assets;
pub mod auth;
pub mod bus;
pub mod config;
pub mod encode;
pub mod files;
pub mod flush;
pub mod frame;
pub mod hub;
pub mod limits;
pub mod merger;
pub mod metrics;
pub mod proxy;
pub mod repoll;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod wire;
pub mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::config::Config;
use crate::flush::HubSink;
use crate::hub::Hub;
use crate::merger::{BusMessage, MergeConfig, Merger, MERGER_QUEUE};
use crate::metrics::Metrics;
use crate::state::AppState;

/// The gateway's two bound listeners (bind them first, so tests can use port 0).
pub struct Listeners {
    pub public: TcpListener,
    pub internal: TcpListener,
}

impl Listeners {
    /// Binds both listeners from the configuration.
    pub fn bind(cfg: &Config) -> Result<Listeners, RunError> {
        let public = listen(cfg.listen).map_err(|e| RunError::Bind("listen", cfg.listen, e))?;
        let internal = listen(cfg.internal_listen)
            .map_err(|e| RunError::Bind("internal-listen", cfg.internal_listen, e))?;
        Ok(Listeners { public, internal })
    }
}

/// Accept backlog: large, so a burst of thousands of connects is not dropped by the
/// kernel (the system's `somaxconn` caps it anyway).
const BACKLOG: u32 = 8192;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(BACKLOG)
}

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {1} (flag --{0}): {2}")]
    Bind(&'static str, SocketAddr, std::io::Error),
    #[error(transparent)]
    Redis(#[from] bus::redis::SetupError),
    #[error(transparent)]
    Auth(#[from] auth::AuthSetupError),
}

fn build_bus(
    cfg: &Config,
    hub: &Hub,
    metrics: &Metrics,
    merger: mpsc::Sender<BusMessage>,
    stop: &CancellationToken,
) -> Result<Bus, RunError> {
    match &cfg.redis_url {
        None => Ok(Bus::Memory(bus::memory::MemoryBus::new(merger))),
        Some(url) => {
            let deps = bus::redis::SubscriberDeps {
                hub: hub.clone(),
                merger,
                linger: std::time::Duration::from_millis(cfg.unsubscribe_linger_ms),
                stop: stop.clone(),
                pace: bus::redis::pace_for(cfg.merge_window()),
            };
            let b = bus::redis::RedisBus::start(url, &cfg.redis_prefix, metrics.clone(), deps)?;
            Ok(Bus::Redis(b))
        }
    }
}

fn build_auth(cfg: &Config) -> Result<auth::Authenticator, RunError> {
    Ok(auth::Authenticator::from_config(
        cfg.auth == config::AuthMode::Jwt,
        cfg.jwt_secret.as_ref().map(|s| s.expose()),
        cfg.jwt_public_key.as_deref(),
    )?)
}

/// Runs a gateway on already-bound listeners until `shutdown` completes, then drains
/// (DESIGN §6) and returns.
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let cfg = Arc::new(cfg);
    let metrics = Metrics::new();
    let hub = Hub::new(cfg.shard_count(), metrics.clone());
    let (merger_tx, merger_rx) = mpsc::channel::<BusMessage>(MERGER_QUEUE);
    let merge = MergeConfig {
        window: cfg.merge_window(),
        max_messages: cfg.max_batch_messages,
        max_bytes: cfg.max_batch_bytes,
    };
    let merger = Merger::new(merge, HubSink::new(hub.clone(), metrics.clone()));
    let stop = CancellationToken::new();
    let bus = build_bus(&cfg, &hub, &metrics, merger_tx, &stop)?;
    metrics.bus_up.set(i64::from(bus.is_ready()));
    tokio::spawn(merger.run(merger_rx));

    let auth = build_auth(&cfg)?;
    let opts = server::ServeOptions {
        header_timeout: std::time::Duration::from_secs(cfg.handshake_timeout_secs),
        metrics: metrics.clone(),
    };
    let state = Arc::new(AppState::new(cfg.clone(), hub, bus, metrics, auth));
    let internal_addr = listeners
        .internal
        .local_addr()
        .unwrap_or(cfg.internal_listen);
    tokio::spawn(server::serve(
        listeners.public,
        api::public_routes(state.clone(), internal_addr),
        Some(state.clone()),
        opts.clone(),
        stop.clone(),
    ));
    tokio::spawn(server::serve(
        listeners.internal,
        api::internal_routes(state.clone()),
        None,
        opts,
        stop.clone(),
    ));

    shutdown.await;
    shutdown::drain(&state, cfg.drain_period()).await;
    stop.cancel();
    Ok(())
}
