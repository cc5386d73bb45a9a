//! Shared state handed to every listener and session.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::auth::Authenticator;
use crate::bus::Bus;
use crate::config::Config;
use crate::hub::Hub;
use crate::limits::{IpLimiter, LimitLog};
use crate::metrics::Metrics;

/// Everything a request or session needs; shared as `Arc<AppState>`.
pub struct AppState {
    pub cfg: Arc<Config>,
    pub hub: Hub,
    pub bus: Bus,
    pub metrics: Metrics,
    /// Caps concurrent WebSocket connections (`--max-connections`).
    pub conn_limit: Arc<Semaphore>,
    /// Verifies connect tokens (`--auth`).
    pub auth: Authenticator,
    /// New connections per second per client address.
    pub connect_limiter: IpLimiter,
    /// Refused upgrades (`ws::upgrade`) and slow-consumer closes (`ws::session`),
    /// summarised in the log.
    pub limit_log: LimitLog,
    draining: AtomicBool,
}

impl AppState {
    pub fn new(
        cfg: Arc<Config>,
        hub: Hub,
        bus: Bus,
        metrics: Metrics,
        auth: Authenticator,
    ) -> Self {
        AppState {
            conn_limit: Arc::new(Semaphore::new(cfg.max_connections)),
            connect_limiter: IpLimiter::new(
                cfg.max_connects_per_ip_per_sec,
                cfg.connect_burst_per_ip,
            ),
            limit_log: LimitLog::default(),
            auth,
            cfg,
            hub,
            bus,
            metrics,
            draining: AtomicBool::new(false),
        }
    }

    /// Set once at SIGTERM; never cleared.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// `/readyz`: the bus is connected and we are not draining.
    pub fn is_ready(&self) -> bool {
        !self.is_draining() && self.bus.is_ready()
    }
}
