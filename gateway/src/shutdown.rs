//! Two-phase shutdown: on SIGTERM or SIGINT the gateway reports not-ready at once, refuses
//! new upgrades, closes connections with 1001 in waves over the first half of the drain
//! period (so clients do not all reconnect elsewhere in the same instant), then waits for
//! the sessions to end, never past the deadline.

use std::time::Duration;

use tokio::time::Instant;

use crate::hub::close;
use crate::state::AppState;

/// Most waves a drain is split into.
const WAVES: usize = 10;

/// Completes on SIGTERM or SIGINT, with the signal's name and number.
pub async fn signal() -> (&'static str, i32) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => ("SIGTERM", 15),
                    _ = int.recv() => ("SIGINT", 2),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                ("SIGINT", 2)
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        ("SIGINT", 2)
    }
}

/// The shutdown trigger of the binary: the first SIGTERM or SIGINT starts the drain; a
/// second one ends the process at once, with the code a process killed by that signal
/// has (128 + its number), as it would have without our handler. An operator who pressed
/// Ctrl-C twice, or a supervisor that signals again, is not kept waiting for the drain.
pub async fn signals() {
    let (name, _) = signal().await;
    tracing::info!("{name}: draining (send it again to exit at once)");
    tokio::spawn(async {
        let (name, number) = signal().await;
        tracing::warn!("second {name}: exiting without finishing the drain");
        std::process::exit(128 + number);
    });
}

/// Drains every connection within `period`.
pub async fn drain(state: &AppState, period: Duration) {
    state.start_draining();
    let deadline = Instant::now() + period;
    let controls = state.hub.all_controls();
    let n = controls.len();
    tracing::info!(connections = n, ?period, "draining");
    if n > 0 {
        let waves = WAVES.min(n);
        let per_wave = n.div_ceil(waves);
        let gap = period / 2 / waves as u32;
        for (i, wave) in controls.chunks(per_wave).enumerate() {
            if i > 0 {
                tokio::time::sleep(gap).await;
            }
            for c in wave {
                if c.close(close::DRAINING, "server draining") {
                    state
                        .metrics
                        .connections_closed
                        .get_or_create(&[("reason", "drain")])
                        .inc();
                }
            }
        }
    }
    // Anything that slipped in during the waves.
    for c in state.hub.all_controls() {
        c.close(close::DRAINING, "server draining");
    }
    if tokio::time::timeout_at(deadline, state.hub.wait_empty())
        .await
        .is_err()
    {
        tracing::warn!(
            left = state.hub.connection_count(),
            "drain deadline reached; dropping the rest"
        );
    }
}
