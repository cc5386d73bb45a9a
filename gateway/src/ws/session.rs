//! One WebSocket connection: a reader loop and a writer loop joined in one task.
//!
//! The writer owns the sink: it drains the bounded outbound queue (batches from the hub,
//! replies from the reader), sends pings, and sends the close frame. The reader owns the
//! stream: commands, the idle deadline, and inbound limits. Either side ends the
//! connection through the shared [`ConnControl`]; the first close code wins.
//!
//! Generic over `Sink`/`Stream`, so the timing logic is unit-tested on tokio's paused clock.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::commands;
use crate::auth::Identity;
use crate::encode::reply_frame;
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

/// Runs a connection until it closes, then unregisters it.
pub async fn run<S>(ws: S, state: Arc<AppState>, params: SessionParams)
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin + Send,
{
    let Some(identity) = params.identity else {
        refuse(ws, &state).await;
        return;
    };
    let (tx, rx) = mpsc::channel(state.cfg.queue_frames);
    let conn = state.hub.register(params.encoding, tx.clone());
    state.metrics.connections_accepted.inc();
    let (sink, stream) = ws.split();
    let mut reader = Reader {
        state: &state,
        conn: &conn,
        tx,
        encoding: params.encoding,
        limit: TokenBucket::new(state.cfg.max_commands_per_sec, state.cfg.command_burst),
        identity,
    };
    reader.initial_channels(&params.channels);
    let writer = write_loop(
        sink,
        rx,
        conn.control.clone(),
        state.cfg.ping_interval(),
        state.metrics.clone(),
    );
    tokio::join!(writer, reader.read_loop(stream, state.cfg.idle_timeout()));
    let gone = state.hub.unregister(&conn);
    state.bus.channels_inactive(gone);
}

/// Closes a connection whose token was missing or bad: 1008 `unauthorized`, at once.
async fn refuse<S>(mut ws: S, state: &AppState)
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    state
        .metrics
        .connections_closed
        .get_or_create(&[("reason", "unauthorized")])
        .inc();
    let frame = CloseFrame {
        code: CloseCode::from(close::POLICY),
        reason: "unauthorized".into(),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        ws.send(Message::Close(Some(frame))).await?;
        // Let the client's close reply arrive before the socket goes.
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                break;
            }
        }
        Ok::<_, WsError>(())
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
    tx: mpsc::Sender<Message>,
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
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        let expiry = expiry_deadline(&self.identity);
        let far = Instant::now() + Duration::from_secs(10 * 365 * 86_400);
        let expired = tokio::time::sleep_until(expiry.unwrap_or(far));
        tokio::pin!(expired);
        loop {
            tokio::select! {
                _ = control.closed() => break,
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

/// Drains the outbound queue into the sink, pings every `ping_every`, and on close sends
/// the close frame (bounded by [`CLOSE_TIMEOUT`]).
async fn write_loop<K>(
    mut sink: K,
    mut rx: mpsc::Receiver<Message>,
    control: Arc<ConnControl>,
    ping_every: Duration,
    metrics: Metrics,
) where
    K: Sink<Message, Error = WsError> + Unpin,
{
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let step = async {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => write_batch(&mut sink, m, &mut rx, &metrics).await,
                    None => Err(WsError::AlreadyClosed),
                },
                _ = ping.tick() => sink.send(Message::Ping(Bytes::new())).await,
            }
        };
        tokio::select! {
            biased;
            _ = control.closed() => break,
            r = step => if r.is_err() {
                // The peer is gone; nothing more can be written.
                control.close(close::NORMAL, "connection lost");
                return;
            },
        }
    }
    let (code, reason) = control.code().unwrap_or((close::NORMAL, ""));
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        sink.send(Message::Close(Some(frame))).await?;
        sink.close().await
    })
    .await;
}

/// Writes `first` and whatever else is already queued, then flushes once.
async fn write_batch<K>(
    sink: &mut K,
    first: Message,
    rx: &mut mpsc::Receiver<Message>,
    metrics: &Metrics,
) -> Result<(), WsError>
where
    K: Sink<Message, Error = WsError> + Unpin,
{
    let mut frames = 0u64;
    let mut bytes = 0u64;
    let mut next = Some(first);
    while let Some(m) = next {
        frames += 1;
        bytes += m.len() as u64;
        sink.feed(m).await?;
        next = if frames < 64 {
            rx.try_recv().ok()
        } else {
            None
        };
    }
    sink.flush().await?;
    metrics.frames_sent.inc_by(frames);
    metrics.bytes_sent.inc_by(bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_channel::mpsc as fmpsc;

    /// An in-memory duplex: what the session writes goes to `out`; `inp` feeds it.
    #[allow(clippy::type_complexity)]
    fn pair() -> (
        impl Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
        fmpsc::UnboundedSender<Result<Message, WsError>>,
        fmpsc::UnboundedReceiver<Message>,
    ) {
        let (in_tx, in_rx) = fmpsc::unbounded();
        let (out_tx, out_rx) = fmpsc::unbounded::<Message>();
        let sink = out_tx.sink_map_err(|_| WsError::AlreadyClosed);
        (
            Duplex {
                sink,
                stream: in_rx,
            },
            in_tx,
            out_rx,
        )
    }

    struct Duplex<K, R> {
        sink: K,
        stream: R,
    }

    impl<K: Sink<Message, Error = WsError> + Unpin, R: Unpin> Sink<Message> for Duplex<K, R> {
        type Error = WsError;
        fn poll_ready(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), WsError>> {
            std::pin::Pin::new(&mut self.sink).poll_ready(cx)
        }
        fn start_send(mut self: std::pin::Pin<&mut Self>, item: Message) -> Result<(), WsError> {
            std::pin::Pin::new(&mut self.sink).start_send(item)
        }
        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), WsError>> {
            std::pin::Pin::new(&mut self.sink).poll_flush(cx)
        }
        fn poll_close(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), WsError>> {
            std::pin::Pin::new(&mut self.sink).poll_close(cx)
        }
    }

    impl<K: Unpin, R: Stream + Unpin> Stream for Duplex<K, R> {
        type Item = R::Item;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<R::Item>> {
            std::pin::Pin::new(&mut self.stream).poll_next(cx)
        }
    }

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

    fn close_code(m: &Message) -> Option<u16> {
        match m {
            Message::Close(Some(f)) => Some(f.code.into()),
            _ => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pings_on_schedule_and_drops_a_silent_client_after_idle_timeout() {
        let st = state(&["--ping-interval-secs", "10", "--idle-timeout-secs", "30"]);
        let (ws, _inp, mut out) = pair();
        let params = SessionParams {
            encoding: Encoding::Json,
            channels: vec![],
            identity: Some(Identity::Anonymous),
        };
        let t0 = Instant::now();
        let task = tokio::spawn(run(ws, st.clone(), params));
        let mut pings = 0;
        let last = loop {
            let m = out.next().await.expect("session wrote nothing");
            match m {
                Message::Ping(_) => pings += 1,
                other => break other,
            }
        };
        assert_eq!(close_code(&last), Some(close::DRAINING));
        assert_eq!(Instant::now() - t0, Duration::from_secs(30));
        assert_eq!(pings, 2, "pings at 10 s and 20 s");
        task.await.unwrap();
        assert_eq!(st.hub.connection_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn any_inbound_frame_keeps_the_connection_alive() {
        let st = state(&["--ping-interval-secs", "10", "--idle-timeout-secs", "30"]);
        let (ws, inp, mut out) = pair();
        let params = SessionParams {
            encoding: Encoding::Json,
            channels: vec![],
            identity: Some(Identity::Anonymous),
        };
        let t0 = Instant::now();
        let task = tokio::spawn(run(ws, st.clone(), params));
        // Answer each ping with a pong for a while, then go silent.
        let mut answered = 0;
        let last = loop {
            match out.next().await.expect("session wrote nothing") {
                Message::Ping(p) if answered < 5 => {
                    answered += 1;
                    inp.unbounded_send(Ok(Message::Pong(p))).unwrap();
                }
                Message::Ping(_) => {}
                other => break other,
            }
        };
        assert_eq!(close_code(&last), Some(close::DRAINING));
        // Last pong at 50 s, so the idle close comes 30 s later.
        assert_eq!(Instant::now() - t0, Duration::from_secs(80));
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn commands_get_replies_with_ids() {
        let st = state(&[]);
        let (ws, inp, mut out) = pair();
        let params = SessionParams {
            encoding: Encoding::Json,
            channels: vec!["ok".into(), "bad name".into()],
            identity: Some(Identity::Anonymous),
        };
        let _task = tokio::spawn(run(ws, st.clone(), params));
        let text = |m: Message| m.into_text().unwrap().to_string();
        // Bad name at connect: error frame, and the good one is not subscribed either.
        let first = text(out.next().await.unwrap());
        assert!(first.contains("\"invalid_channel\""), "{first}");
        inp.unbounded_send(Ok(Message::text(r#"{"op":"ping","id":3}"#)))
            .unwrap();
        assert_eq!(text(out.next().await.unwrap()), r#"{"op":"pong","id":3}"#);
        inp.unbounded_send(Ok(Message::text(
            r#"{"op":"subscribe","channels":["a","a","b"],"id":"s"}"#,
        )))
        .unwrap();
        assert_eq!(
            text(out.next().await.unwrap()),
            r#"{"op":"subscribed","channels":["a","b"],"id":"s"}"#
        );
        assert!(st.hub.has_subscribers("a"));
        inp.unbounded_send(Ok(Message::text("{"))).unwrap();
        let err = text(out.next().await.unwrap());
        assert!(err.contains("\"bad_request\""), "{err}");
    }
}
