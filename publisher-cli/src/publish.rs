//! `pushctl publish`.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use deadpool_redis::redis;
use gateway::bus::redis::{publish_one, Keys};
use gateway::wire::{validate_channel, BROADCAST};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;

/// Arguments of `pushctl publish`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("via").required(true).args(["redis", "url"])))]
pub struct Args {
    /// Publish straight to Redis (same envelope as the gateways).
    #[arg(long, env = "PUSHFLEET_REDIS_URL", value_name = "URL")]
    redis: Option<String>,
    /// Redis channel prefix (with --redis).
    #[arg(long, env = "PUSHFLEET_REDIS_PREFIX", default_value = "pushfleet")]
    prefix: String,
    /// Publish through a gateway's internal HTTP endpoint, e.g. http://127.0.0.1:9090.
    #[arg(
        long,
        env = "PUSHFLEET_URL",
        value_name = "URL",
        conflicts_with = "redis"
    )]
    url: Option<String>,
    /// API key for the HTTP endpoint.
    #[arg(
        long,
        env = "PUSHFLEET_API_KEY",
        hide_env_values = true,
        requires = "url"
    )]
    api_key: Option<String>,
    /// Send to every connected client instead of one channel.
    #[arg(long)]
    broadcast: bool,
    /// CHANNEL (unless --broadcast), then an optional DATA: a JSON value. Without DATA,
    /// NDJSON is read from stdin, one message per line.
    #[arg(value_name = "CHANNEL | DATA", num_args = 0..=2)]
    positional: Vec<String>,
    /// Messages per second (with --count, or for stdin lines), from one a day to
    /// 1,000,000,000. Default: as fast as possible.
    #[arg(long, value_name = "N", value_parser = parse_rate)]
    rate: Option<Duration>,
    /// Send DATA this many times (1 or more; 0 used to send nothing and succeed).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
}

/// `--rate N` as the interval between two messages: from 1 ns (10^9 a second, the timer's
/// finest) to a day. Anything else, 0 and "inf" included, is a usage error; it used to
/// go unpaced (0, negative, NaN) or panic building the interval (inf, 1e10, 1e-300).
fn parse_rate(s: &str) -> Result<Duration, String> {
    const SLOWEST: Duration = Duration::from_secs(86_400);
    let n: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of messages per second"))?;
    match Duration::try_from_secs_f64(1.0 / n) {
        Ok(every) if n > 0.0 && !every.is_zero() && every <= SLOWEST => Ok(every),
        _ => Err(format!(
            "{s} is out of range: messages per second, from one a day (0.0000116) to 1000000000"
        )),
    }
}

/// The longest stdin line read: the largest body any gateway takes (`--max-publish-bytes`
/// at most 64 MiB). A longer line (a binary file piped by mistake) is refused when it
/// passes this, instead of being read whole, however long, before anything is said.
const MAX_LINE: usize = 64 << 20;

/// The next line of `input` without its line end (`\n` or `\r\n`), or `None` at the end: at most `max`
/// bytes are read for it (more is an error, as is text that is not UTF-8).
async fn next_line<R: AsyncBufRead + Unpin>(input: &mut R, max: usize) -> Result<Option<String>> {
    let mut buf = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    if (&mut *input)
        .take(limit)
        .read_until(b'\n', &mut buf)
        .await?
        == 0
    {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    } else if buf.len() > max {
        bail!("longer than {} MiB", max >> 20);
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| anyhow!("not UTF-8 text"))
}

/// A usage mistake clap cannot see (exit code 2).
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Splits the positionals into (channel, data).
fn target(args: &Args) -> Result<(String, Option<String>)> {
    let usage = |m: &str| anyhow::Error::new(Usage(m.to_owned()));
    let mut pos = args.positional.iter().cloned();
    let channel = if args.broadcast {
        BROADCAST.to_owned()
    } else {
        let ch = pos
            .next()
            .ok_or_else(|| usage("give a CHANNEL, or --broadcast"))?;
        validate_channel(&ch).map_err(|e| usage(&e.to_string()))?;
        ch
    };
    let data = pos.next();
    if pos.next().is_some() {
        return Err(usage("too many arguments (with --broadcast, only DATA)"));
    }
    if data.is_none() && args.count != 1 {
        return Err(usage("--count needs DATA"));
    }
    Ok((channel, data))
}

enum Sink {
    Redis(redis::aio::MultiplexedConnection, Keys),
    Http {
        host: String,
        path: String,
        key: Option<String>,
        /// The HTTP/1.1 connection kept open between messages, and when it last answered.
        conn: Option<(SendRequest<Full<Bytes>>, Instant)>,
    },
}

impl Sink {
    async fn open(args: &Args) -> Result<Sink> {
        if let Some(url) = &args.redis {
            let client = redis::Client::open(url.as_str()).context("invalid --redis URL")?;
            // Messages show the URL without its password.
            let url = crate::redact::redacted(url);
            let conn = tokio::time::timeout(
                Duration::from_secs(5),
                client.get_multiplexed_async_connection(),
            )
            .await
            .map_err(|_| anyhow!("Redis at {url} did not answer within 5 s"))?
            .with_context(|| format!("cannot connect to Redis at {url}"))?;
            return Ok(Sink::Redis(conn, Keys::new(&args.prefix)));
        }
        let url = args.url.as_deref().unwrap_or_default();
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            let url = crate::redact::redacted(url);
            anyhow!("--url must start with http:// (got {url})")
        })?;
        let (host, base) = rest.split_once('/').unwrap_or((rest, ""));
        if host.contains('@') {
            // It was taken for the host, and its password printed in the error.
            bail!("--url takes no user:password@ (the API key goes in --api-key)");
        }
        let base = base.trim_end_matches('/');
        let path = if base.is_empty() {
            "/api/publish".to_owned()
        } else {
            format!("/{base}/api/publish")
        };
        Ok(Sink::Http {
            host: host.to_owned(),
            path,
            key: args.api_key.clone(),
            conn: None,
        })
    }

    async fn send(&mut self, channel: &str, json: &str) -> Result<()> {
        match self {
            Sink::Redis(conn, keys) => publish_one(conn, keys, channel, json.as_bytes())
                .await
                .context("Redis PUBLISH failed"),
            Sink::Http {
                host,
                path,
                key,
                conn,
            } => {
                let body = if channel == BROADCAST {
                    format!(r#"{{"broadcast":true,"data":{json}}}"#)
                } else {
                    format!(r#"{{"channel":"{channel}","data":{json}}}"#)
                };
                http_post(conn, host, path, key.as_deref(), body).await
            }
        }
    }
}

async fn connect(host: &str) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(host)
        .await
        .with_context(|| format!("cannot connect to {host}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake failed")?;
    tokio::spawn(conn);
    Ok(sender)
}

/// How long a kept-open connection may sit idle and still be reused.
const REUSE_IDLE: Duration = Duration::from_millis(500);

/// Sends `req` on a new connection, which is kept for the next message.
async fn send_fresh(
    conn: &mut Option<(SendRequest<Full<Bytes>>, Instant)>,
    host: &str,
    req: http::Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>> {
    *conn = None;
    let mut sender = connect(host).await?;
    let resp = sender
        .send_request(req)
        .await
        .context("HTTP request failed")?;
    *conn = Some((sender, Instant::now()));
    Ok(resp)
}

/// Posts one message on the kept-open connection (opening it when there is none). A
/// request that a closed connection hands back unsent (the gateway restarted or dropped
/// an idle connection) goes out once more on a new connection; one that may have been
/// sent is never repeated, so a message is published at most once.
async fn http_post(
    conn: &mut Option<(SendRequest<Full<Bytes>>, Instant)>,
    host: &str,
    path: &str,
    key: Option<&str>,
    body: String,
) -> Result<()> {
    let mut req = http::Request::post(path)
        .header(http::header::HOST, host)
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(k) = key {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {k}"));
    }
    let req = req.body(Full::new(Bytes::from(body)))?;
    // A connection idle for longer than REUSE_IDLE is not reused: the gateway closes idle
    // ones after its header timeout (1 s at the least), and a request sent just as it
    // does could be lost with it.
    let reusable = match conn.as_mut() {
        Some((sender, last)) if last.elapsed() < REUSE_IDLE => sender.ready().await.is_ok(),
        _ => false,
    };
    let resp = match conn.as_mut() {
        Some((sender, last)) if reusable => match sender.try_send_request(req).await {
            Ok(resp) => {
                *last = Instant::now();
                resp
            }
            Err(mut e) => match e.take_message() {
                Some(unsent) => send_fresh(conn, host, unsent).await?,
                None => {
                    *conn = None;
                    return Err(e.into_error()).context("HTTP request failed");
                }
            },
        },
        _ => send_fresh(conn, host, req).await?,
    };
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    if status.is_success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&bytes);
    let why = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.into_owned());
    bail!("gateway answered {status}: {why}")
}

fn check_json(s: &str) -> Result<String> {
    let s = s.trim();
    serde_json::from_str::<&serde_json::value::RawValue>(s)
        .map(|_| s.to_owned())
        .map_err(|e| anyhow!("not a JSON value ({e}): {s:.80}"))
}

pub async fn run(args: Args) -> Result<()> {
    let (channel, data) = target(&args)?;
    let mut sink = Sink::open(&args).await?;
    let mut pace = args.rate.map(|every| {
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    if let Some(data) = &data {
        let json = check_json(data)?;
        for _ in 0..args.count {
            if let Some(p) = pace.as_mut() {
                p.tick().await;
            }
            sink.send(&channel, &json).await?;
        }
        return Ok(());
    }
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut n = 0u64;
    while let Some(line) = next_line(&mut stdin, MAX_LINE)
        .await
        .with_context(|| format!("stdin line {}", n + 1))?
    {
        n += 1;
        if line.trim().is_empty() {
            continue;
        }
        let json = check_json(&line).with_context(|| format!("stdin line {n}"))?;
        if let Some(p) = pace.as_mut() {
            p.tick().await;
        }
        sink.send(&channel, &json).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stdin_lines_are_bounded() {
        let mut input: &[u8] = b"{\"a\":1}\r\n\n12345678\n123456789";
        assert_eq!(
            next_line(&mut input, 8).await.unwrap().as_deref(),
            Some("{\"a\":1}")
        );
        assert_eq!(next_line(&mut input, 8).await.unwrap().as_deref(), Some(""));
        assert_eq!(
            next_line(&mut input, 8).await.unwrap().as_deref(),
            Some("12345678")
        );
        // Nine bytes without a line end: refused once it passes the bound (it was read
        // whole, however long).
        let e = next_line(&mut input, 8).await.unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
        let mut input: &[u8] = b"last line without an end";
        assert_eq!(
            next_line(&mut input, 64).await.unwrap().as_deref(),
            Some("last line without an end")
        );
        assert_eq!(next_line(&mut input, 64).await.unwrap(), None);
        let mut input: &[u8] = b"\xff\xfe\n";
        assert!(next_line(&mut input, 64).await.is_err());
    }

    #[test]
    fn rates_are_intervals_the_timer_can_hold() {
        assert_eq!(parse_rate("100"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_rate(" 0.5 "), Ok(Duration::from_secs(2)));
        assert_eq!(parse_rate("1e9"), Ok(Duration::from_nanos(1)));
        assert_eq!(parse_rate("0.0000116").map(|d| d.as_secs()), Ok(86_206));
        // 0 and below went unpaced; inf and 1e10 made a zero interval (tokio panics);
        // 1e-300 an interval no Duration holds (panic).
        for bad in [
            "0", "-5", "NaN", "inf", "1e10", "1e-300", "0.00001", "ten", "",
        ] {
            let e = parse_rate(bad).unwrap_err();
            assert!(
                e.contains("out of range") || e.contains("not a number"),
                "{bad}: {e}"
            );
        }
    }
}
