//! `pushctl`: publish to a Pushfleet fleet (straight to Redis, or through a gateway's HTTP
//! endpoint) and watch channels over WebSocket.
//!
//! Exit codes: 0 success, 1 failure (one line on stderr says why), 2 usage error.

mod publish;
mod tail;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "pushctl",
    version,
    about = "Publish to and watch a Pushfleet fleet",
    after_help = "Examples:\n  \
        pushctl publish --url http://127.0.0.1:9090 news '{\"hello\":\"world\"}'\n  \
        pushctl publish --redis redis://127.0.0.1:6379 --broadcast '\"maintenance at 5\"'\n  \
        seq 1 3 | sed 's/.*/{\"n\":&}/' | pushctl publish --url http://127.0.0.1:9090 news\n  \
        pushctl tail --url ws://127.0.0.1:8080/ws news scores\n  \
        pushctl token --secret \"$SECRET\" --sub alice --channels 'news,room:*' --ttl 1h"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Publish DATA (a JSON value), or NDJSON lines from stdin, to a channel or everyone.
    Publish(publish::Args),
    /// Print every message arriving on the channels, one JSON line each.
    Tail(tail::Args),
    /// Mint an HS256 connect token (for development and tests).
    Token(token::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pushctl: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Publish(args) => publish::run(args).await,
            Command::Tail(args) => tail::run(args).await,
            Command::Token(args) => token::run(args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pushctl: {e:#}");
            if e.is::<publish::Usage>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
