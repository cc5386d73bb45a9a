//! Accept loops. Each listener runs hyper's HTTP/1 server over our own accept loop;
//! the public one answers `/ws` itself (see [`crate::ws::upgrade`]) and hands every
//! other request to warp.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{self, Either};
use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_service::Service;
use warp::Filter;

use crate::metrics::Metrics;
use crate::state::AppState;

/// Per-listener settings.
#[derive(Clone)]
pub struct ServeOptions {
    /// How long a client may take to send its request headers (slowloris guard).
    pub header_timeout: Duration,
    pub metrics: Metrics,
}

/// Serves `routes` on `listener` until `stop`; with `ws` set, `/ws` upgrades go to the
/// gateway's own handler.
pub async fn serve<F>(
    listener: TcpListener,
    routes: F,
    ws: Option<Arc<AppState>>,
    opts: ServeOptions,
    stop: CancellationToken,
) where
    F: Filter<Extract = (warp::reply::Response,), Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let svc = warp::service(routes);
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off a little instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let svc = svc.clone();
        let ws = ws.clone();
        let stop = stop.clone();
        let opts = opts.clone();
        // hyper wakes a connection's task from inside it once per request with a body:
        // re-poll on the spot rather than through the scheduler (see `repoll`).
        tokio::spawn(crate::repoll::absorb_self_wakes(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let mut svc = svc.clone();
                match &ws {
                    Some(state) if req.uri().path() == "/ws" => {
                        Either::Left(future::ready(Ok::<_, Infallible>(
                            crate::ws::upgrade::handle(state.clone(), peer.ip(), req),
                        )))
                    }
                    _ => Either::Right(svc.call(req)),
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(opts.header_timeout)
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r {
                    // hyper reports the header-read timeout as "read header from client
                    // timeout"; `is_timeout` does not always see it through the upgrade layer.
                    if e.is_timeout() || e.to_string().contains("timeout") {
                        opts.metrics
                            .connections_rejected
                            .get_or_create(&[("reason", "handshake_timeout")])
                            .inc();
                    }
                    tracing::debug!(error = %e, "http connection ended with an error");
                },
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
                }
            }
        }));
    }
}
