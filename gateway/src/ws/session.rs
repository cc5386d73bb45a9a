//! One WebSocket connection: a reader loop and a writer loop joined in one task.
//!
//! The writer owns the socket's write half: it writes the prebuilt frames of the bounded
//! outbound queue (batches from the hub, replies from the reader) as they are, plus pings,
//! tungstenite's own control replies (see [`super::io`]) and the close frame. The reader
//! owns the read half through tungstenite: commands, the idle deadline, inbound limits.
//! Either side ends the connection through the shared [`ConnControl`]; the first close
//! code wins.
//!
//! Generic over `AsyncRead`/`AsyncWrite`, so the timing logic is unit-tested over in-memory
//! pipes on tokio's paused clock.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::commands;
use super::io::{ControlOut, ReadSide};
use crate::auth::Identity;
use crate::encode::reply_frame;
use crate::frame;
use crate::hub::{close, ConnControl, ConnHandle, Encoding};
use crate::limits::TokenBucket;
use crate::metrics::Metrics;
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

/// Maps a read error to the close code to send and the metric reason. Exhaustive on
/// purpose: a new tungstenite error kind must be classified here.
fn close_for(err: &WsError) -> (u16, &'static str, &'static str) {
    match err {
        WsError::Capacity(_) => (close::TOO_BIG, "message too big", "too_big"),
        WsError::Protocol(_) => (close::PROTOCOL, "protocol error", "protocol"),
        WsError::Utf8(_) => (close::INVALID_DATA, "invalid UTF-8", "protocol"),
        WsError::AttackAttempt => (close::POLICY, "attack attempt", "protocol"),
        WsError::WriteBufferFull(_) => (close::TRY_AGAIN, "slow consumer", "slow_consumer"),
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
/// HTTP layer had already read past the upgrade request.
pub async fn run<R, W>(
    read: R,
    prefix: Bytes,
    write: W,
    state: Arc<AppState>,
    params: SessionParams,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let Some(identity) = params.identity else {
        Box::pin(refuse(read, write, &state)).await;
        return;
    };
    let out = Arc::new(ControlOut::default());
    let cfg = super::upgrade::ws_config(state.cfg.max_message_bytes);
    let stream = WebSocketStream::from_raw_socket(
        ReadSide::new(read, prefix, out.clone()),
        Role::Server,
        Some(cfg),
    )
    .await;
    let (tx, rx) = mpsc::channel(state.cfg.queue_frames);
    let conn = state.hub.register(params.encoding, tx.clone());
    state.metrics.connections_accepted.inc();
    let mut reader = Reader {
        state: &state,
        conn: &conn,
        tx,
        encoding: params.encoding,
        limit: TokenBucket::new(state.cfg.max_commands_per_sec, state.cfg.command_burst),
        identity,
    };
    reader.initial_channels(&params.channels);
    let writer = Writer {
        out,
        control: conn.control.clone(),
        metrics: state.metrics.clone(),
    };
    tokio::join!(
        writer.run(write, rx, state.cfg.ping_interval()),
        reader.read_loop(stream, state.cfg.idle_timeout())
    );
    let gone = state.hub.unregister(&conn);
    state.bus.channels_inactive(gone);
}

/// Closes a connection whose token was missing or bad: 1008 `unauthorized`, at once.
async fn refuse<R, W>(mut read: R, mut write: W, state: &AppState)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    state
        .metrics
        .connections_closed
        .get_or_create(&[("reason", "unauthorized")])
        .inc();
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        write
            .write_all(&frame::close(close::POLICY, "unauthorized"))
            .await?;
        write.flush().await?;
        // Let the client's close reply arrive before the socket goes.
        tokio::io::copy(&mut read, &mut tokio::io::sink()).await
    })
    .await;
}

/// When a token expires, as a deadline on tokio's clock.
fn expiry_deadline(identity: &Identity) -> Option<Instant> {
    let exp = identity.expires_at()?;
    let now = crate::wire::now_unix_ms() / 1000;
    let left = (exp + crate::auth::LEEWAY_SECS).saturating_sub(now);
    Some(Instant::now() + Duration::from_secs(left))
}

struct Reader<'a> {
    state: &'a AppState,
    conn: &'a ConnHandle,
    tx: mpsc::Sender<Bytes>,
    encoding: Encoding,
    limit: TokenBucket,
    identity: Identity,
}

impl Reader<'_> {
    fn initial_channels(&mut self, names: &[String]) {
        if names.is_empty() {
            return;
        }
        if let Err(reply) = commands::subscribe(self.state, self.conn, &self.identity, names, &None)
        {
            self.reply_now(&reply);
        }
    }

    async fn read_loop<R>(&mut self, mut stream: R, idle_timeout: Duration)
    where
        R: Stream<Item = Result<Message, WsError>> + Unpin,
    {
        let control = self.conn.control.clone();
        let closed = control.closed();
        tokio::pin!(closed);
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        let expiry = expiry_deadline(&self.identity);
        let far = Instant::now() + Duration::from_secs(10 * 365 * 86_400);
        let expired = tokio::time::sleep_until(expiry.unwrap_or(far));
        tokio::pin!(expired);
        loop {
            tokio::select! {
                _ = closed.as_mut() => break,
                _ = &mut expired, if expiry.is_some() => {
                    self.close(close::POLICY, "token expired", "token_expired");
                    break;
                }
                _ = &mut idle => {
                    self.close(close::DRAINING, "idle timeout", "idle");
                    break;
                }
                msg = stream.next() => match msg {
                    None => {
                        self.close(close::NORMAL, "connection lost", "gone");
                        return;
                    }
                    Some(Err(e)) => {
                        let (code, reason, label) = close_for(&e);
                        self.close(code, reason, label);
                        break;
                    }
                    Some(Ok(msg)) => {
                        idle.as_mut().reset(Instant::now() + idle_timeout);
                        if !self.on_message(msg).await {
                            return;
                        }
                    }
                },
            }
        }
        // The server is closing: keep reading (and discarding) until the client answers
        // the close frame, so the socket is not reset under the close frame.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            while let Some(Ok(m)) = stream.next().await {
                if m.is_close() {
                    break;
                }
            }
        })
        .await;
    }

    /// Handles one inbound message; false when the connection should end.
    async fn on_message(&mut self, msg: Message) -> bool {
        let (payload, binary): (Bytes, bool) = match msg {
            Message::Text(t) => (t.into(), false),
            Message::Binary(b) => (b, true),
            // tungstenite answers pings itself; any frame already reset the idle deadline.
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
        self.reply(&reply).await;
        true
    }

    /// Queues a reply. When the queue is full the reader waits (and so stops reading the
    /// socket): a client that floods commands is slowed down by TCP, and no reply is lost.
    /// A client that does not read at all is closed by the hub's slow-consumer rule.
    async fn reply(&self, reply: &ServerReply) {
        self.count_error(reply);
        let frame = reply_frame(self.encoding, reply);
        tokio::select! {
            _ = self.tx.send(frame) => {}
            _ = self.conn.control.closed() => {}
        }
    }

    /// Like [`Reader::reply`] without waiting, for replies sent before the loop starts.
    fn reply_now(&self, reply: &ServerReply) {
        self.count_error(reply);
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.tx.try_send(reply_frame(self.encoding, reply))
        {
            self.close(close::TRY_AGAIN, "slow consumer", "slow_consumer");
        }
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

/// The writer half of a session.
struct Writer {
    out: Arc<ControlOut>,
    control: Arc<ConnControl>,
    metrics: Metrics,
}

/// Frames written per wake-up before yielding to other connections.
const WRITE_BATCH: usize = 64;

impl Writer {
    /// Writes queued frames, control replies and pings until the connection closes, then
    /// the close frame (bounded by [`CLOSE_TIMEOUT`]).
    ///
    /// `cur` holds the unwritten rest of the frame in progress. A close can interrupt a
    /// write that the socket is blocking; the rest of that frame then still goes out
    /// before the close frame, so the client never sees half a frame.
    async fn run<W: AsyncWrite + Unpin>(
        self,
        mut w: W,
        mut rx: mpsc::Receiver<Bytes>,
        ping_every: Duration,
    ) {
        let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cur = Bytes::new();
        // Created once and kept across iterations: re-arming these on every frame costs
        // more than writing the frame.
        let closed = self.control.closed();
        tokio::pin!(closed);
        let control_out = self.out.notify.notified();
        tokio::pin!(control_out);
        loop {
            let step = async {
                tokio::select! {
                    m = rx.recv() => match m {
                        Some(f) => self.write_frames(&mut w, &mut cur, f, &mut rx).await,
                        None => Err(std::io::ErrorKind::BrokenPipe.into()),
                    },
                    _ = control_out.as_mut() => {
                        control_out.set(self.out.notify.notified());
                        let b = self.out.take();
                        write_frame(&mut w, &mut cur, b).await
                    }
                    _ = ping.tick() => write_frame(&mut w, &mut cur, frame::ping()).await,
                }
            };
            tokio::select! {
                biased;
                _ = closed.as_mut() => break,
                r = step => if r.is_err() {
                    // The peer is gone; nothing more can be written.
                    self.control.close(close::NORMAL, "connection lost");
                    return;
                },
            }
        }
        let (code, reason) = self.control.code().unwrap_or((close::NORMAL, ""));
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            w.write_all(&cur).await?;
            w.write_all(&self.out.take()).await?;
            w.write_all(&frame::close(code, reason)).await?;
            w.shutdown().await
        })
        .await;
    }

    /// Writes `first` and whatever else is already queued: each frame's shared bytes go to
    /// the socket as they are.
    async fn write_frames<W: AsyncWrite + Unpin>(
        &self,
        w: &mut W,
        cur: &mut Bytes,
        first: Bytes,
        rx: &mut mpsc::Receiver<Bytes>,
    ) -> std::io::Result<()> {
        let mut frames = 0u64;
        let mut bytes = 0u64;
        let mut next = Some(first);
        while let Some(f) = next {
            frames += 1;
            bytes += f.len() as u64;
            write_frame(w, cur, f).await?;
            next = if frames < WRITE_BATCH as u64 {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        self.metrics.frames_sent.inc_by(frames);
        self.metrics.bytes_sent.inc_by(bytes);
        Ok(())
    }
}

/// Writes one frame, keeping its unwritten rest in `cur` (see [`Writer::run`]).
async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    cur: &mut Bytes,
    frame: Bytes,
) -> std::io::Result<()> {
    *cur = frame;
    while !cur.is_empty() {
        let n = w.write(cur).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        bytes::Buf::advance(cur, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, DuplexStream};

    fn state(args: &[&str]) -> Arc<AppState> {
        let mut v = vec!["gateway"];
        v.extend_from_slice(args);
        let cfg = Arc::new(crate::config::Config::load_from(v).unwrap());
        let metrics = Metrics::new();
        let hub = crate::hub::Hub::new(2, metrics.clone());
        let (tx, _rx) = mpsc::channel(16);
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
        let task = tokio::spawn(run(r, Bytes::new(), w, st.clone(), p));
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
        drop(c);
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
    async fn client_pings_get_pongs_through_the_writer() {
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
        let first = ws
            .next()
            .await
            .unwrap()
            .unwrap()
            .into_text()
            .unwrap()
            .to_string();
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
        let err = ws
            .next()
            .await
            .unwrap()
            .unwrap()
            .into_text()
            .unwrap()
            .to_string();
        assert!(err.contains("\"bad_request\""), "{err}");
    }
}
