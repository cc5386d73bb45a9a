//! `pushctl tail`: one JSON line per message, `{"channel":…,"data":…}`.

use std::io::Write;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::StreamExt;
use gateway::wire::validate_channel;
use tokio_tungstenite::tungstenite::Message;

/// Arguments of `pushctl tail`.
#[derive(clap::Args)]
pub struct Args {
    /// Gateway WebSocket URL, e.g. ws://127.0.0.1:8080/ws.
    #[arg(
        long,
        env = "PUSHFLEET_WS_URL",
        default_value = "ws://127.0.0.1:8080/ws"
    )]
    url: String,
    /// Exit after this many messages (1 or more; 0 printed one all the same).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Channels to watch (`*` broadcasts always arrive).
    #[arg(required = true)]
    channels: Vec<String>,
}

pub async fn run(args: Args) -> Result<()> {
    for c in &args.channels {
        validate_channel(c).map_err(|e| anyhow!("{e}"))?;
    }
    let sep = if args.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}channels={}", args.url, args.channels.join(","));
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .with_context(|| format!("cannot connect to {}", crate::redact::redacted(&args.url)))?;
    let mut out = std::io::stdout().lock();
    let mut seen = 0u64;
    while let Some(msg) = ws.next().await {
        let msg = msg.context("connection lost")?;
        let frame: serde_json::Value = match msg {
            Message::Text(t) => serde_json::from_str(&t)?,
            Message::Close(f) => {
                let code = f.as_ref().map_or(1005, |f| u16::from(f.code));
                if code == 1000 {
                    return Ok(());
                }
                let reason = f.map(|f| f.reason.to_string()).unwrap_or_default();
                bail!("gateway closed the connection: {code} {reason}");
            }
            _ => continue,
        };
        match frame["op"].as_str() {
            Some("batch") => match print(&mut out, &frame, &mut seen, args.count) {
                Ok(false) => {}
                Ok(true) => return Ok(()),
                // The reader of our output has gone (`pushctl tail … | head -1`): end
                // quietly, as Unix tools do; this said "Broken pipe" and exited 1.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(e.into()),
            },
            Some("error") => eprintln!("pushctl: gateway error: {frame}"),
            _ => {}
        }
    }
    bail!("connection ended")
}

/// Prints a batch frame's messages, one line each; whether `count` lines have now been
/// printed in all.
fn print(
    out: &mut impl Write,
    frame: &serde_json::Value,
    seen: &mut u64,
    count: Option<u64>,
) -> std::io::Result<bool> {
    let channel = &frame["channel"];
    for m in frame["messages"].as_array().into_iter().flatten() {
        let line = serde_json::json!({"channel": channel, "data": m});
        writeln!(out, "{line}")?;
        *seen += 1;
        if count.is_some_and(|c| *seen >= c) {
            out.flush()?;
            return Ok(true);
        }
    }
    out.flush()?;
    Ok(false)
}
