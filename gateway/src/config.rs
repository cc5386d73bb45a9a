//! Typed, validated configuration (DESIGN §4.4). Every flag also reads
//! `PUSHFLEET_<FLAG_IN_CAPS>`; a bad value stops the gateway with exit code 64 and a
//! message naming the flag and its variable.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Exit code for a configuration error (`EX_USAGE` from sysexits.h).
pub const EXIT_CONFIG: i32 = 64;

/// A secret string of at least `MIN` bytes that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<const MIN: usize = 8>(String);

/// An HS256 secret: at least 16 bytes.
pub type JwtSecret = Secret<16>;

impl<const MIN: usize> Secret<MIN> {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl<const MIN: usize> fmt::Debug for Secret<MIN> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl<const MIN: usize> FromStr for Secret<MIN> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.len() < MIN {
            return Err(format!("a secret must be at least {MIN} bytes"));
        }
        Ok(Secret(s.to_owned()))
    }
}

/// Connect-token mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    None,
    Jwt,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Gateway configuration. Field docs are the `--help` text.
#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", version, about = "Pushfleet WebSocket push gateway")]
pub struct Config {
    /// Public listener: WebSocket `/ws`, `/healthz`, `/readyz`, demo page.
    #[arg(long, env = "PUSHFLEET_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Internal listener: `POST /api/publish`, `/metrics`.
    #[arg(
        long,
        env = "PUSHFLEET_INTERNAL_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub internal_listen: SocketAddr,
    /// Redis URL (redis://host:port/db). Absent: the embedded single-node bus.
    #[arg(long, env = "PUSHFLEET_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Prefix of every Redis channel name.
    #[arg(long, env = "PUSHFLEET_REDIS_PREFIX", default_value = "pushfleet")]
    pub redis_prefix: String,
    /// How long a channel stays subscribed on the bus after its last local subscriber left.
    #[arg(long, env = "PUSHFLEET_UNSUBSCRIBE_LINGER_MS", default_value_t = 2000)]
    pub unsubscribe_linger_ms: u64,
    /// Merge window: a channel's messages within it go out as one batch. 0 = no merging.
    #[arg(long, env = "PUSHFLEET_MERGE_WINDOW_MS", default_value_t = 1000)]
    pub merge_window_ms: u64,
    /// A batch is flushed early when it holds this many messages.
    #[arg(long, env = "PUSHFLEET_MAX_BATCH_MESSAGES", default_value_t = 1000)]
    pub max_batch_messages: usize,
    /// A batch is flushed early when its messages reach this many bytes.
    #[arg(long, env = "PUSHFLEET_MAX_BATCH_BYTES", default_value_t = 256 * 1024)]
    pub max_batch_bytes: usize,
    /// Number of connection shards (default: a power of two ≥ 4 × cores).
    #[arg(long, env = "PUSHFLEET_SHARDS")]
    pub shards: Option<usize>,
    /// Outbound frames queued per connection; a client that falls this far behind is
    /// closed with 1013 (slow consumer).
    #[arg(long, env = "PUSHFLEET_QUEUE_FRAMES", default_value_t = 64)]
    pub queue_frames: usize,
    /// Seconds between server pings.
    #[arg(long, env = "PUSHFLEET_PING_INTERVAL_SECS", default_value_t = 25)]
    pub ping_interval_secs: u64,
    /// A connection that sends nothing (not even a pong) for this long is closed.
    #[arg(long, env = "PUSHFLEET_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,
    /// Most concurrent WebSocket connections; more get HTTP 503 at upgrade.
    #[arg(long, env = "PUSHFLEET_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Most channels one connection may subscribe to.
    #[arg(long, env = "PUSHFLEET_MAX_SUBSCRIPTIONS", default_value_t = 100)]
    pub max_subscriptions: usize,
    /// Largest inbound client message (bytes); larger closes with 1009.
    #[arg(long, env = "PUSHFLEET_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024)]
    pub max_message_bytes: usize,
    /// Largest `POST /api/publish` body (bytes); larger gets 413.
    #[arg(long, env = "PUSHFLEET_MAX_PUBLISH_BYTES", default_value_t = 1024 * 1024)]
    pub max_publish_bytes: usize,
    /// Drain period after SIGTERM: connections are closed with 1001 in waves within it.
    #[arg(long, env = "PUSHFLEET_DRAIN_SECS", default_value_t = 10)]
    pub drain_secs: u64,
    /// API key for the publish endpoint (repeatable; env: comma-separated). None: open.
    #[arg(long = "api-key", env = "PUSHFLEET_API_KEY", value_delimiter = ',')]
    pub api_keys: Vec<Secret>,
    /// Allowed `Origin`s for WebSocket upgrades (comma-separated). Empty: any origin.
    #[arg(long, env = "PUSHFLEET_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Client commands per second per connection (token bucket refill rate).
    #[arg(long, env = "PUSHFLEET_MAX_COMMANDS_PER_SEC", default_value_t = 50)]
    pub max_commands_per_sec: u32,
    /// Burst size of the per-connection command bucket.
    #[arg(long, env = "PUSHFLEET_COMMAND_BURST", default_value_t = 100)]
    pub command_burst: u32,
    /// Connect tokens: `none` (every channel open) or `jwt` (`?token=` required).
    #[arg(long, env = "PUSHFLEET_AUTH", value_enum, default_value_t = AuthMode::None)]
    pub auth: AuthMode,
    /// HS256 secret for connect tokens (with --auth jwt).
    #[arg(long, env = "PUSHFLEET_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<JwtSecret>,
    /// PEM file with the RS256 or ES256 public key for connect tokens (with --auth jwt).
    #[arg(long, env = "PUSHFLEET_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<std::path::PathBuf>,
    /// New WebSocket connections per second from one client address (token bucket refill).
    #[arg(
        long,
        env = "PUSHFLEET_MAX_CONNECTS_PER_IP_PER_SEC",
        default_value_t = 50
    )]
    pub max_connects_per_ip_per_sec: u32,
    /// Burst of new connections allowed from one client address.
    #[arg(long, env = "PUSHFLEET_CONNECT_BURST_PER_IP", default_value_t = 200)]
    pub connect_burst_per_ip: u32,
    /// Reverse proxies whose `X-Forwarded-For` names the client (CIDR networks or addresses,
    /// comma-separated), e.g. the ingress controller's pod network. Empty: the header is
    /// ignored and the TCP peer is the client.
    #[arg(long, env = "PUSHFLEET_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<crate::proxy::Cidr>,
    /// Seconds a client has to send its HTTP request (upgrade) headers.
    #[arg(long, env = "PUSHFLEET_HANDSHAKE_TIMEOUT_SECS", default_value_t = 10)]
    pub handshake_timeout_secs: u64,
    /// Log format.
    #[arg(long, env = "PUSHFLEET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Run one worker thread per allowed CPU, each pinned to its own (for a gateway that has
    /// its CPUs to itself; docs/OPERATIONS.md). `--pin-workers` alone means true.
    #[arg(
        long,
        env = "PUSHFLEET_PIN_WORKERS",
        num_args = 0..=1,
        default_value = "false",
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub pin_workers: bool,
}

/// A configuration value that parsed but makes no sense.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for --{flag} (env {env}): {reason}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub env: String,
    pub reason: String,
}

/// Env variable for a flag name: `merge-window-ms` → `PUSHFLEET_MERGE_WINDOW_MS`.
pub fn env_name(flag: &str) -> String {
    format!("PUSHFLEET_{}", flag.replace('-', "_").to_ascii_uppercase())
}

fn check(ok: bool, flag: &'static str, reason: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            flag,
            env: env_name(flag),
            reason: reason.to_owned(),
        })
    }
}

impl Config {
    /// Parses from the command line and environment and validates.
    pub fn load() -> Result<Config, LoadError> {
        Self::load_from(std::env::args_os())
    }

    /// Like [`Config::load`], from explicit arguments (tests).
    pub fn load_from<I, T>(args: I) -> Result<Config, LoadError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cfg = Config::try_parse_from(args).map_err(describe_clap_error)?;
        cfg.validate()
            .map_err(|e| LoadError::Invalid(e.to_string()))?;
        Ok(cfg)
    }

    /// Semantic checks beyond what the types already guarantee.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let prefix_ok = !self.redis_prefix.is_empty()
            && self.redis_prefix.len() <= 64
            && self
                .redis_prefix
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'));
        check(prefix_ok, "redis-prefix", "1–64 chars of A-Z a-z 0-9 _ - .")?;
        if let Some(url) = &self.redis_url {
            let ok = url.starts_with("redis://") || url.starts_with("rediss://");
            check(ok, "redis-url", "must start with redis:// or rediss://")?;
        }
        check(
            self.unsubscribe_linger_ms <= 600_000,
            "unsubscribe-linger-ms",
            "at most 600000",
        )?;
        check(
            self.merge_window_ms <= 60_000,
            "merge-window-ms",
            "at most 60000 (0 disables merging)",
        )?;
        check(
            (1..=100_000).contains(&self.max_batch_messages),
            "max-batch-messages",
            "between 1 and 100000",
        )?;
        check(
            (1024..=16 << 20).contains(&self.max_batch_bytes),
            "max-batch-bytes",
            "between 1024 and 16777216",
        )?;
        if let Some(n) = self.shards {
            check((1..=4096).contains(&n), "shards", "between 1 and 4096")?;
        }
        check(
            (1..=65_536).contains(&self.queue_frames),
            "queue-frames",
            "between 1 and 65536",
        )?;
        check(
            (1..=3600).contains(&self.ping_interval_secs),
            "ping-interval-secs",
            "between 1 and 3600",
        )?;
        check(
            self.idle_timeout_secs > self.ping_interval_secs && self.idle_timeout_secs <= 7200,
            "idle-timeout-secs",
            "must be greater than --ping-interval-secs and at most 7200",
        )?;
        check(
            (1..=1_000_000).contains(&self.max_connections),
            "max-connections",
            "between 1 and 1000000",
        )?;
        check(
            (1..=10_000).contains(&self.max_subscriptions),
            "max-subscriptions",
            "between 1 and 10000",
        )?;
        check(
            (256..=16 << 20).contains(&self.max_message_bytes),
            "max-message-bytes",
            "between 256 and 16777216",
        )?;
        check(
            (1024..=64 << 20).contains(&self.max_publish_bytes),
            "max-publish-bytes",
            "between 1024 and 67108864",
        )?;
        check(self.drain_secs <= 3600, "drain-secs", "at most 3600")?;
        check(
            (1..=100_000).contains(&self.max_commands_per_sec),
            "max-commands-per-sec",
            "between 1 and 100000",
        )?;
        check(
            (1..=100_000).contains(&self.command_burst),
            "command-burst",
            "between 1 and 100000",
        )?;
        check(
            (1..=100_000).contains(&self.max_connects_per_ip_per_sec),
            "max-connects-per-ip-per-sec",
            "between 1 and 100000",
        )?;
        check(
            (1..=1_000_000).contains(&self.connect_burst_per_ip),
            "connect-burst-per-ip",
            "between 1 and 1000000",
        )?;
        check(
            (1..=300).contains(&self.handshake_timeout_secs),
            "handshake-timeout-secs",
            "between 1 and 300",
        )?;
        if self.auth == AuthMode::Jwt {
            check(
                self.jwt_secret.is_some() != self.jwt_public_key.is_some(),
                "auth",
                "--auth jwt needs exactly one of --jwt-secret (PUSHFLEET_JWT_SECRET) and --jwt-public-key (PUSHFLEET_JWT_PUBLIC_KEY)",
            )?;
        }
        let origins_ok = self
            .allowed_origins
            .iter()
            .all(|o| o.starts_with("http://") || o.starts_with("https://"));
        check(
            origins_ok,
            "allowed-origins",
            "each origin must look like https://host[:port]",
        )?;
        Ok(())
    }

    /// Shard count: configured, or the next power of two ≥ 4 × cores.
    pub fn shard_count(&self) -> usize {
        self.shards.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (4 * cores).next_power_of_two()
        })
    }

    pub fn merge_window(&self) -> Duration {
        Duration::from_millis(self.merge_window_ms)
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    pub fn drain_period(&self) -> Duration {
        Duration::from_secs(self.drain_secs)
    }
}

/// Result of [`Config::load`] when it does not yield a configuration.
#[derive(Debug)]
pub enum LoadError {
    /// `--help` or `--version`: print this and exit 0.
    Info(String),
    /// A bad flag or value: print this and exit [`EXIT_CONFIG`].
    Invalid(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Info(s) | LoadError::Invalid(s) => f.write_str(s),
        }
    }
}

/// Turns a clap error into one line naming the flag and its env variable.
fn describe_clap_error(err: clap::Error) -> LoadError {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            return LoadError::Info(err.render().to_string())
        }
        _ => {}
    }
    let arg = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    };
    let base = err.render().to_string();
    let first = base
        .lines()
        .next()
        .unwrap_or("invalid configuration")
        .to_owned();
    LoadError::Invalid(match arg.as_deref().and_then(|a| a.strip_prefix("--")) {
        Some(flag) => {
            let flag = flag.split([' ', '=']).next().unwrap_or(flag);
            format!("{first} (flag --{flag}, env {})", env_name(flag))
        }
        None => first,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str]) -> Result<Config, String> {
        let mut v = vec!["gateway"];
        v.extend_from_slice(args);
        Config::load_from(v).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_valid() {
        let c = load(&[]).unwrap();
        assert_eq!(c.merge_window_ms, 1000);
        assert_eq!(c.max_batch_bytes, 256 * 1024);
        assert!(c.shard_count().is_power_of_two());
        assert!(c.shard_count() >= 4);
    }

    #[test]
    fn bad_number_names_flag_and_env() {
        let e = load(&["--merge-window-ms", "soon"]).unwrap_err();
        assert!(e.contains("--merge-window-ms"), "{e}");
        assert!(e.contains("PUSHFLEET_MERGE_WINDOW_MS"), "{e}");
    }

    #[test]
    fn semantic_errors_name_flag_and_env() {
        let e = load(&["--queue-frames", "0"]).unwrap_err();
        assert!(
            e.contains("--queue-frames") && e.contains("PUSHFLEET_QUEUE_FRAMES"),
            "{e}"
        );
        let e = load(&["--idle-timeout-secs", "5", "--ping-interval-secs", "10"]).unwrap_err();
        assert!(e.contains("PUSHFLEET_IDLE_TIMEOUT_SECS"), "{e}");
        let e = load(&["--redis-url", "http://x"]).unwrap_err();
        assert!(e.contains("PUSHFLEET_REDIS_URL"), "{e}");
    }

    #[test]
    fn api_keys_are_masked() {
        let c = load(&["--api-key", "supersecret1", "--api-key", "supersecret2"]).unwrap();
        assert_eq!(c.api_keys.len(), 2);
        let shown = format!("{c:?}");
        assert!(!shown.contains("supersecret"), "{shown}");
        let e = load(&["--api-key", "short"]).unwrap_err();
        assert!(e.contains("PUSHFLEET_API_KEY"), "{e}");
    }
}
