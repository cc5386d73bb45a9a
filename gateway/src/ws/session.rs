//! One WebSocket connection: a reader loop and a writer loop joined in one task.
//!
//! The writer drains the connection's outbox (which owns the socket): it writes the
//! prebuilt frames of the bounded outbound queue (batches from the hub, replies from the
//! reader) as they are, plus pings, the frame reader's pongs (see [`super::reader`]) and
//! the close frame. The reader reads the socket through [`super::reader::FrameReader`]:
//! commands, the idle deadline, inbound limits.
//! Either side ends the connection through the shared [`ConnControl`]; the first close
//! code wins.
//!
//! Generic over the read half and the [`super::io::RawWrite`] socket, so the timing logic
//! is unit-tested over in-memory pipes on tokio's paused clock.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncRead;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::commands;
use super::io::{Drain, Outbox, ReadSide};
use super::reader::FrameReader;
use crate::auth::Identity;
use crate::encode::reply_frame;
use crate::frame;
use crate::hub::{close, ConnHandle, Encoding};
use crate::limits::{Limit, TokenBucket};
use crate::state::AppState;
use crate::wire::{ErrorCode, ServerReply};

/// How long the close frame may take to go out before the socket is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the upgrade learned about the connection.
#[derive(Debug, Clone)]
pub struct SessionParams {
    pub encoding: Encoding,
    /// Channels from `?channels=`, not yet validated.
    pub channels: Vec<String>,
    /// The verified connect token, or `None` when it was missing or bad (close 1008).
    pub identity: Option<Identity>,
}

/// Maps a read error (the frame reader speaks tungstenite's error type) to the close code
/// to send and the metric reason. Exhaustive on purpose: a new error kind must be
/// classified here.
fn close_for(err: &WsError) -> (u16, &'static str, &'static str) {
    match err {
        WsError::Capacity(_) => (close::TOO_BIG, "message too big", "too_big"),
        WsError::Protocol(_) => (close::PROTOCOL, "protocol error", "protocol"),
        WsError::Utf8(_) => (close::INVALID_DATA, "invalid UTF-8", "protocol"),
        WsError::AttackAttempt => (close::POLICY, "attack attempt", "protocol"),
        WsError::WriteBufferFull(_) => (close::TRY_AGAIN, close::SLOW_CONSUMER, "slow_consumer"),
        WsError::ConnectionClosed
        | WsError::AlreadyClosed
        | WsError::Io(_)
        | WsError::Tls(_)
        | WsError::Url(_)
        | WsError::Http(_)
        | WsError::HttpFormat(_) => (close::NORMAL, "connection lost", "gone"),
    }
}

/// Runs a connection until it closes, then unregisters it. `prefix` holds bytes the
/// HTTP layer had already read past the upgrade request; `out` writes to the socket.
pub async fn run<R>(
    read: R,
    prefix: Bytes,
    out: Arc<Outbox>,
    state: Arc<AppState>,
    params: SessionParams,
) where
    R: AsyncRead + Unpin + Send,
{
    let Some(identity) = params.identity else {
        Box::pin(refuse(read, out, &state)).await;
        return;
    };
    let stream = FrameReader::new(
        ReadSide::new(read, prefix),
        state.cfg.max_message_bytes,
        out.clone(),
    );
    let conn = state.hub.register(params.encoding, out.clone());
    state.metrics.connections_accepted.inc();
    let mut session = Session {
        state: &state,
        conn: &conn,
        out,
        encoding: params.encoding,
        limit: TokenBucket::new(state.cfg.max_commands_per_sec, state.cfg.command_burst),
        identity,
    };
    session.initial_channels(&params.channels);
    session
        .serve(stream, state.cfg.idle_timeout(), state.cfg.ping_interval())
        .await;
    let gone = state.hub.unregister(conn);
    state.bus.channels_inactive(gone);
}

/// Closes a connection whose token was missing or bad: 1008 `unauthorized`, at once.
async fn refuse<R: AsyncRead + Unpin>(mut read: R, out: Arc<Outbox>, state: &AppState) {
    state
        .metrics
        .connections_closed
        .get_or_create(&[("reason", "unauthorized")])
        .inc();
    let _ = out.send(&frame::close(close::POLICY, "unauthorized"));
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        flush(&out).await;
        // Let the client's close reply arrive before the socket goes.
        tokio::io::copy(&mut read, &mut tokio::io::sink()).await
    })
    .await;
}

/// Writes everything queued, waiting for the socket as needed.
async fn flush(out: &Outbox) {
    loop {
        match out.drain() {
            Drain::Done | Drain::Broken => return,
            Drain::Blocked => {
                if out.writable().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// When a token expires, as a deadline on tokio's clock; `None` for a token without one
/// or whose `exp` lies beyond what the clock can hold (a signed token may say `exp`
/// 2^64 − 1 to mean "never": such a connection is never closed for its token).
fn expiry_deadline(identity: &Identity) -> Option<Instant> {
    let exp = identity.expires_at()?;
    let now = crate::wire::now_unix_ms() / 1000;
    let left = exp
        .saturating_add(crate::auth::LEEWAY_SECS)
        .saturating_sub(now);
    Instant::now().checked_add(Duration::from_secs(left))
}

struct Session<'a> {
    state: &'a AppState,
    conn: &'a ConnHandle,
    out: Arc<Outbox>,
    encoding: Encoding,
    limit: TokenBucket,
    identity: Identity,
}

impl Session<'_> {
    fn initial_channels(&mut self, names: &[String]) {
        if names.is_empty() {
            return;
        }
        if let Err(reply) = commands::subscribe(self.state, self.conn, &self.identity, names, &None)
        {
            self.reply(&reply);
        }
    }

    async fn serve<S>(&mut self, mut stream: S, idle_timeout: Duration, ping_every: Duration)
    where
        S: Stream<Item = Result<Message, WsError>> + Unpin,
    {
        let control = self.conn.control.clone();
        // Kept across iterations: re-arming these on every wake-up costs more than a write.
        let closed = control.closed();
        tokio::pin!(closed);
        // One timer per connection serves both the ping schedule and the idle deadline:
        // it fires at whichever comes first and is re-aimed then (not on every frame).
        let mut next_ping = Instant::now() + ping_every;
        let mut idle_at = Instant::now() + idle_timeout;
        let timer = tokio::time::sleep_until(next_ping.min(idle_at));
        tokio::pin!(timer);
        // Only connections with a token carry an expiry timer (boxed: most have none).
        let mut expired =
            expiry_deadline(&self.identity).map(|t| Box::pin(tokio::time::sleep_until(t)));
        // Whether the socket refused the rest of the outbox; then wait until it is writable.
        let mut blocked = false;
        let stream_ended = loop {
            let reading = !self.out.is_full();
            tokio::select! {
                biased;
                _ = closed.as_mut() => break false,
                _ = async { expired.as_mut().expect("guarded").as_mut().await }, if expired.is_some() => {
                    self.close(close::POLICY, "token expired", "token_expired");
                    break false;
                }
                _ = &mut timer => {
                    let now = Instant::now();
                    if now >= idle_at {
                        self.close(close::DRAINING, "idle timeout", "idle");
                        break false;
                    }
                    if now >= next_ping {
                        if self.out.send(&frame::ping()).is_err() {
                            self.close(close::TRY_AGAIN, close::SLOW_CONSUMER, "slow_consumer");
                            break false;
                        }
                        self.state.metrics.pings_sent.inc();
                        next_ping = now + ping_every;
                    }
                    timer.as_mut().reset(next_ping.min(idle_at));
                }
                r = self.out.writable(), if blocked => match r.ok().and_then(|()| self.drain()) {
                    Some(b) => blocked = b,
                    None => break false,
                },
                _ = self.out.queued.notified(), if !blocked => match self.drain() {
                    Some(b) => blocked = b,
                    None => break false,
                },
                msg = stream.next(), if reading => match msg {
                    None => {
                        self.close(close::NORMAL, "connection lost", "gone");
                        break true;
                    }
                    Some(Err(e)) => {
                        let (code, reason, label) = close_for(&e);
                        self.close(code, reason, label);
                        break false;
                    }
                    Some(Ok(msg)) => {
                        idle_at = Instant::now() + idle_timeout;
                        if !self.on_message(msg) {
                            break false;
                        }
                    }
                },
            }
        };
        // Boxed: a cold path, kept out of every connection's task size.
        Box::pin(self.finish(stream, stream_ended)).await;
    }

    /// Writes what the outbox holds. `Some(blocked)`, or `None` when the socket failed.
    fn drain(&self) -> Option<bool> {
        match self.out.drain() {
            Drain::Done => Some(false),
            Drain::Blocked => Some(true),
            Drain::Broken => {
                self.close(close::NORMAL, "connection lost", "gone");
                None
            }
        }
    }

    /// Takes the connection out of the fan-out ([`crate::hub::Hub::retire`]), sends the
    /// close frame (after the rest of a frame already started), then keeps
    /// reading until the client answers it, so the socket is not reset under the close
    /// frame. Bounded by [`CLOSE_TIMEOUT`].
    async fn finish<S>(&self, mut stream: S, stream_ended: bool)
    where
        S: Stream<Item = Result<Message, WsError>> + Unpin,
    {
        // Out of the fan-out first: nothing published from now on may follow the close
        // frame anyway (RFC 6455 §5.5.1), so no batch need be offered to this connection.
        let gone = self.state.hub.retire(self.conn);
        self.state.bus.channels_inactive(gone);
        let (code, reason) = self.conn.control.code().unwrap_or((close::NORMAL, ""));
        if (code, reason) == (close::TRY_AGAIN, close::SLOW_CONSUMER) {
            self.state
                .limit_log
                .refused(Limit::QueueFrames, &self.state.cfg, None);
        }
        self.out.finish_with(frame::close(code, reason));
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            flush(&self.out).await;
            if !stream_ended {
                while let Some(Ok(m)) = stream.next().await {
                    if m.is_close() {
                        break;
                    }
                }
            }
        })
        .await;
    }

    /// Handles one inbound message; false when the connection should end.
    fn on_message(&mut self, msg: Message) -> bool {
        let (payload, binary): (Bytes, bool) = match msg {
            Message::Text(t) => (t.into(), false),
            Message::Binary(b) => (b, true),
            // The frame reader answers pings itself; any frame already reset the idle
            // deadline.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return true,
            Message::Close(_) => {
                self.close(close::NORMAL, "bye", "client");
                return false;
            }
        };
        let reply = if !self.limit.allow() {
            commands::error(
                ErrorCode::RateLimited,
                format!(
                    "more than {} commands per second; retry in {} ms",
                    self.state.cfg.max_commands_per_sec,
                    self.limit.retry_after().as_millis()
                ),
                None,
            )
        } else {
            match commands::parse(&payload, binary) {
                Ok(cmd) => commands::execute(self.state, self.conn, &self.identity, cmd),
                Err(reply) => reply,
            }
        };
        self.reply(&reply);
        true
    }

    /// Sends a reply (see [`Outbox::send_reply`] for why it is never refused).
    fn reply(&self, reply: &ServerReply) {
        self.out.send_reply(self.frame_of(reply));
    }

    /// Encodes and frames a reply, counting it (and its error code, if any).
    fn frame_of(&self, reply: &ServerReply) -> Bytes {
        self.count_error(reply);
        let frame = reply_frame(self.encoding, reply);
        self.state.metrics.frames_sent.inc();
        self.state.metrics.bytes_sent.inc_by(frame.len() as u64);
        frame
    }

    fn count_error(&self, reply: &ServerReply) {
        if let Some(code) = commands::code_label(reply) {
            self.state
                .metrics
                .command_errors
                .get_or_create(&[("code", code)])
                .inc();
        }
    }

    fn close(&self, code: u16, reason: &'static str, label: &'static str) {
        if self.conn.control.close(code, reason) {
            self.state
                .metrics
                .connections_closed
                .get_or_create(&[("reason", label)])
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::ws::io::{RawWrite, Socket};
    use std::sync::Mutex;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, WriteHalf};
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::WebSocketStream;

    /// The write half of an in-memory pipe as a `RawWrite` (its buffer is large enough for
    /// these tests, so it always reports itself writable).
    struct Pipe(Mutex<WriteHalf<DuplexStream>>);

    impl RawWrite for Pipe {
        fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
            let mut w = self.0.lock().unwrap();
            let mut cx = Context::from_waker(std::task::Waker::noop());
            match std::pin::Pin::new(&mut *w).poll_write(&mut cx, buf) {
                Poll::Ready(r) => r,
                Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
            }
        }
        fn poll_write_ready(&self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn state(args: &[&str]) -> Arc<AppState> {
        let mut v = vec!["gateway"];
        v.extend_from_slice(args);
        let cfg = Arc::new(crate::config::Config::load_from(v).unwrap());
        let metrics = Metrics::new();
        let hub = crate::hub::Hub::new(2, metrics.clone());
        let (tx, _rx) = tokio::sync::mpsc::channel(16);
        let bus = crate::bus::Bus::Memory(crate::bus::memory::MemoryBus::new(tx));
        Arc::new(AppState::new(
            cfg,
            hub,
            bus,
            metrics,
            crate::auth::Authenticator::None,
        ))
    }

    fn params(channels: &[&str]) -> SessionParams {
        SessionParams {
            encoding: Encoding::Json,
            channels: channels.iter().map(|c| c.to_string()).collect(),
            identity: Some(Identity::Anonymous),
        }
    }

    /// Starts a session on one end of an in-memory pipe; returns the client's end.
    fn start(st: &Arc<AppState>, p: SessionParams) -> (DuplexStream, tokio::task::JoinHandle<()>) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (r, w) = tokio::io::split(server);
        let out = Arc::new(Outbox::new(Socket::other(Pipe(Mutex::new(w))), 64));
        let task = tokio::spawn(run(r, Bytes::new(), out, st.clone(), p));
        (client, task)
    }

    /// Reads one server frame: (opcode, payload). Server frames are unmasked.
    async fn read_frame(c: &mut DuplexStream) -> (u8, Vec<u8>) {
        let mut h = [0u8; 2];
        c.read_exact(&mut h).await.unwrap();
        assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
        let len = match h[1] & 0x7f {
            126 => usize::from(c.read_u16().await.unwrap()),
            127 => c.read_u64().await.unwrap() as usize,
            n => usize::from(n),
        };
        let mut p = vec![0u8; len];
        c.read_exact(&mut p).await.unwrap();
        (h[0] & 0x0f, p)
    }

    /// A masked client frame.
    fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8, 1, 2, 3, 4];
        f.extend(
            payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
        );
        f
    }

    /// The next frame from the server, which must be text.
    async fn next_text<S>(ws: &mut WebSocketStream<S>) -> String
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        ws.next()
            .await
            .unwrap()
            .unwrap()
            .into_text()
            .unwrap()
            .to_string()
    }

    fn close_code(payload: &[u8]) -> u16 {
        u16::from_be_bytes([payload[0], payload[1]])
    }

    #[tokio::test(start_paused = true)]
    async fn pings_on_schedule_and_drops_a_silent_client_after_idle_timeout() {
        let st = state(&["--ping-interval-secs", "10", "--idle-timeout-secs", "30"]);
        let t0 = Instant::now();
        let (mut c, task) = start(&st, params(&[]));
        let mut pings = 0;
        let (op, payload) = loop {
            match read_frame(&mut c).await {
                (0x9, _) => pings += 1,
                other => break other,
            }
        };
        assert_eq!((op, close_code(&payload)), (0x8, close::DRAINING));
        assert_eq!(Instant::now() - t0, Duration::from_secs(30));
        assert_eq!(pings, 2, "pings at 10 s and 20 s");
        assert_eq!(st.metrics.pings_sent.get(), 2, "and counted");
        drop(c);
        task.await.unwrap();
        assert_eq!(st.hub.connection_count(), 0);
    }

    fn user(expires_at: u64) -> Identity {
        Identity::User {
            sub: "alice".into(),
            patterns: vec!["a".into()],
            expires_at,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_whose_exp_outlives_the_clock_has_no_deadline() {
        let now = crate::wire::now_unix_ms() / 1000;
        let soon = expiry_deadline(&user(now + 60)).expect("a deadline");
        let left = soon - Instant::now();
        assert!(
            left >= Duration::from_secs(60) && left <= Duration::from_secs(66),
            "{left:?}"
        );
        assert_eq!(expiry_deadline(&user(now - 60)), Some(Instant::now()));
        // 2^64 − 1 overflowed `exp + leeway`; 10^19 s overflowed the clock's `Instant`.
        for far in [u64::MAX, 10_000_000_000_000_000_000] {
            assert_eq!(expiry_deadline(&user(far)), None, "{far}");
        }
        assert_eq!(expiry_deadline(&Identity::Anonymous), None);

        // A session with such a token is served until it goes idle.
        let st = state(&["--ping-interval-secs", "10", "--idle-timeout-secs", "30"]);
        let p = SessionParams {
            identity: Some(user(u64::MAX)),
            ..params(&["a"])
        };
        let (mut c, task) = start(&st, p);
        assert_eq!(read_frame(&mut c).await.0, 0x9);
        assert!(st.hub.has_subscribers("a"));
        while read_frame(&mut c).await.0 != 0x8 {}
        drop(c);
        task.await.expect("the session ends without a panic");
        assert_eq!(st.hub.connection_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_closing_connection_leaves_the_fanout_before_its_close_frame() {
        let st = state(&["--ping-interval-secs", "10", "--idle-timeout-secs", "30"]);
        let (mut c, task) = start(&st, params(&["a"]));
        // Pings at 10 s and 20 s go unanswered; the idle close comes at 30 s.
        assert_eq!(read_frame(&mut c).await.0, 0x9);
        assert!(st.hub.has_subscribers("a"));
        while read_frame(&mut c).await.0 != 0x8 {}
        // The client has not answered the close frame: the session waits for it (up to
        // 5 s), still a connection, but no longer a subscriber of anything.
        assert_eq!(st.hub.connection_count(), 1);
        assert!(!st.hub.has_subscribers("a"));
        assert_eq!(st.metrics.subscriptions.get(), 0);
        c.write_all(&client_frame(0x8, &close::DRAINING.to_be_bytes()))
            .await
            .unwrap();
        task.await.unwrap();
        assert_eq!(st.hub.connection_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn any_inbound_frame_keeps_the_connection_alive() {
        let st = state(&["--ping-interval-secs", "10", "--idle-timeout-secs", "30"]);
        let t0 = Instant::now();
        let (mut c, _task) = start(&st, params(&[]));
        let mut answered = 0;
        let payload = loop {
            match read_frame(&mut c).await {
                (0x9, p) if answered < 5 => {
                    answered += 1;
                    c.write_all(&client_frame(0xA, &p)).await.unwrap();
                }
                (0x9, _) => {}
                (0x8, p) => break p,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(close_code(&payload), close::DRAINING);
        // Last pong at 50 s, so the idle close comes 30 s later.
        assert_eq!(Instant::now() - t0, Duration::from_secs(80));
    }

    #[tokio::test(start_paused = true)]
    async fn client_pings_get_pongs_through_the_outbox() {
        let st = state(&[]);
        let (mut c, _task) = start(&st, params(&[]));
        c.write_all(&client_frame(0x9, b"abc")).await.unwrap();
        assert_eq!(read_frame(&mut c).await, (0xA, b"abc".to_vec()));
    }

    #[tokio::test(start_paused = true)]
    async fn commands_get_replies_with_ids() {
        let st = state(&[]);
        let (c, _task) = start(&st, params(&["ok", "bad name"]));
        let mut ws = WebSocketStream::from_raw_socket(c, Role::Client, None).await;
        use futures_util::SinkExt;
        // Bad name at connect: error frame, and the good one is not subscribed either.
        let first = next_text(&mut ws).await;
        assert!(first.contains("\"invalid_channel\""), "{first}");
        ws.send(Message::text(r#"{"op":"ping","id":3}"#))
            .await
            .unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(r#"{"op":"pong","id":3}"#)
        );
        ws.send(Message::text(
            r#"{"op":"subscribe","channels":["a","a","b"],"id":"s"}"#,
        ))
        .await
        .unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(r#"{"op":"subscribed","channels":["a","b"],"id":"s"}"#)
        );
        assert!(st.hub.has_subscribers("a"));
        ws.send(Message::text("{")).await.unwrap();
        let err = next_text(&mut ws).await;
        assert!(err.contains("\"bad_request\""), "{err}");
    }
}
