//! `pushctl`: publish to a Pushfleet fleet (straight to Redis, or through a gateway's HTTP
//! endpoint) and watch channels over WebSocket.
//!
//! Exit codes: 0 success, 1 failure (one line on stderr says why), 2 usage error.

mod publish;
mod redact;
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
            eprintln!("pushctl: {}", describe(&e));
            if e.is::<publish::Usage>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The error and its causes, "outer: inner", each said once: some errors (Redis's,
/// tungstenite's) already print their source in their own message, which anyhow's `{:#}`
/// would print again.
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prints its source in its own message, as Redis's errors do.
    #[derive(Debug)]
    struct Repeats(std::io::Error);

    impl std::fmt::Display for Repeats {
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "cannot reach the server: {}", self.0)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn causes_already_in_a_message_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = anyhow::Error::new(Repeats(io)).context("cannot connect to Redis at redis://x");
        assert_eq!(
            format!("{e:#}"),
            "cannot connect to Redis at redis://x: cannot reach the server: refused: refused"
        );
        assert_eq!(
            describe(&e),
            "cannot connect to Redis at redis://x: cannot reach the server: refused"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(describe(&plain), "outer: inner");
    }
}
